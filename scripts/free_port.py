"""Prints loopback ports that are free now, chosen below the kernel's
ephemeral range (ports in that range are also handed to outgoing connections
and port-0 listeners, so one picked there can be taken before its peer binds
it).  Usage: python3 scripts/free_port.py [COUNT]; or import free_port."""
import os
import random
import socket
import sys


_given = set()


def free_port(taken=()):
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except OSError:
        low = 32768
    low = min(max(low, 12000), 65000)
    rng = random.Random(os.getpid() ^ random.getrandbits(32))
    while True:
        port = rng.randrange(10000, low)
        if port in taken or port in _given:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            _given.add(port)
            return port
        except OSError:
            continue
        finally:
            s.close()


if __name__ == "__main__":
    ports = []
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        ports.append(free_port(ports))
    print("\n".join(map(str, ports)))
