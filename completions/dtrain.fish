# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dtrain_global_optspecs
    string join \n v/verbose q/quiet h/help V/version
end

function __fish_dtrain_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dtrain_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dtrain_using_subcommand
    set -l cmd (__fish_dtrain_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dtrain -n "__fish_dtrain_needs_command" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_needs_command" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_needs_command" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "hash" -d 'blake3 of files, or of checkpoints (their model identity)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "info" -d 'Show libtorch, CUDA, threads and build features'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "fetch-shard" -d 'Stream a miner\'s assigned rows of fineweb from the Hub (JSON lines)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "tokenize" -d 'Turn text into a GPT-2 token shard (llm.c format)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "init" -d 'Create a freshly initialised GPT-2 checkpoint'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "train-step" -d 'Compute a GPT-2 gradient on a token shard; write it and a receipt'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "apply" -d 'Step the optimizer (AdamW or LAMB) with an averaged gradient'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "keygen" -d 'Create an ed25519 key for reduce, receipts and the ledger'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "peers" -d 'Read a peers file (checked as reduce reads it): JSON, or a file of some of them'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "reduce" -d 'Butterfly all-reduce of gradient files with the round\'s peers'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "roster" -d 'Per-epoch membership: signed announcements, the validator\'s signed roster, its peers file'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "relay" -d 'Forward reduce connections to peers that accept none (behind NAT)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "verify" -d 'Check a miner\'s gradient against its receipt: signature, data, recomputation'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "score" -d 'Turn verdicts, receipts and reduce transcripts into miner weights'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "ledger" -d 'The signed, hash-chained progress ledger'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "plot" -d 'Draw named series of points from JSON lines (PNG, or SVG by extension)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "eval" -d 'Mean loss of a checkpoint on a token shard'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "status" -d 'Where a miner or validator stands: epoch, loss, last reduce, verdicts, lag'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "push" -d 'Publish a checkpoint to the Hub, tagged (e.g. with the epoch)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "pull" -d 'Fetch a tagged checkpoint from the Hub'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "hub" -d 'The local hub: serve a folder over the Hugging Face Hub API'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "gen-docs" -d 'Write man pages and shell completions (for packagers)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand hash" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand hash" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand hash" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand hash" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -l json -d 'Print one JSON object instead of lines'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l repo -d 'Dataset repository on the Hub' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l config -d 'Dataset config (sample-350BT reads sample/350BT/)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l revision -d 'Dataset revision (branch, tag or commit)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l source -d 'Read local parquet files laid out like the repo instead of the Hub' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l seed -d 'Seed of the subnet\'s assignment' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l epoch -d 'Global epoch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l uid -d 'The miner\'s uid' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l rows -d 'Rows to fetch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l held-out -d 'Rows at the corpus\'s end held out for the validator\'s evaluation: never assigned' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l spec -d 'Fetch exactly the rows of this data spec (ignores --seed/--epoch/--uid/--rows)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l spec-out -d 'Write the data spec of the selected rows here' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -s o -l output -d 'Write the rows (JSON lines) to a file instead of standard output' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l retries -d 'Retries per HTTP request (exponential backoff)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l eval -d 'Fetch the held-out evaluation rows (the last --held-out rows) instead of an assignment'
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -l json -d 'Print a JSON summary on stderr'
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand fetch-shard" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l format -d 'How the input is cut into documents' -r -f -a "jsonl\t'One JSON object per line; its "text" field is a document'
text\t'Paragraphs separated by blank lines are documents'
lines\t'Every non-empty line is a document'"
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s o -l output -d 'Output shard (default: standard output, if it is not a terminal)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l tokenizer -d 'Tokenizer: a tokenizer.json, a folder with vocab.json + merges.txt, or hf:REPO [default: the embedded GPT-2 / distilgpt2 tokenizer]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l lossy -d 'Replace invalid UTF-8 instead of failing'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l json -d 'Print a JSON summary line on stderr'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -l arch -d 'tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a config.json' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -l seed -d 'Seed of the initialisation (same seed, same bits)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -s o -l output -d 'Checkpoint folder to create' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand init" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l model -d 'Checkpoint folder (config.json + model.safetensors)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l tokens -d 'Token shard (llm.c format)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l seq-len -d 'Sequence length T (sequence k is tokens [k·T, k·T+T+1))' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l micro-batch -d 'Sequences per micro-batch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l sequences -d 'Sequences to use, e.g. 0-63 or 1,5,9-12 [default: all whole sequences]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l device -d 'auto, cpu, cuda or cuda:N' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l precision -d 'Compute precision of matmuls and attention' -r -f -a "f32\t''
bf16\t''"
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l sketch-k -d '±1 projections per micro-batch gradient sketch in the receipt (0: none)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -s o -l output -d 'Gradient file to write (safetensors)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l receipt -d 'Receipt to write (JSON)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l key -d 'Sign the receipt with this key (from `dtrain keygen`)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l miner -d 'The miner\'s name (its peer name in reduce rounds), recorded in the receipt' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l round -d 'The round this work is for (e.g. epoch-12), recorded in the signed receipt: a validator checking another round refuses it' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-steps -d 'DiLoCo: H inner optimizer steps over H equal batches of the sequences; the file is the pseudo-gradient θ₀ − θ_H' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-optim -d 'Inner optimizer' -r -f -a "adamw\t'AdamW (torch.optim.AdamW)'
lamb\t'LAMB (torch_optimizer.Lamb)'
nesterov\t'SGD with Nesterov momentum (DiLoCo\'s outer step; torch.optim.SGD(nesterov=True))'"
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-lr -d 'Inner learning rate' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-weight-decay -d 'Inner weight decay (≥2-D parameters, as apply)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-clip -d 'Inner gradient-norm clip (0: none)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-beta1 -d 'Inner Adam β₁' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-beta2 -d 'Inner Adam β₂' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-eps -d 'Inner Adam ε' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l state-every -d 'Publish the loop\'s state after every K inner steps (and the last) [default: H/8 rounded up, so a validator can recompute an eighth]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l states -d 'DiLoCo: the folder the loop\'s states are written to (publish it with the receipt: verify recomputes segments from them)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l inner-state -d 'DiLoCo: carry the inner optimizer\'s state across rounds in FILE (read when it exists, replaced after the step; without it each round starts fresh)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l benchmark -d 'Benchmark mode: time N steady-state passes over the micro-batches (after 3 warm-up passes) and print tokens/s; writes nothing' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l peak-flops -d 'Peak FLOP/s of the device, to report MFU in benchmark mode' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l json -d 'Print the summary as JSON'
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -l profile -d 'Benchmark mode: also time the forward, the LM head and the backward (synchronising the device between them)'
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand train-step" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l model -d 'Checkpoint folder to step from' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l grad -d 'The (averaged) gradient' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l optim -d 'The optimizer (its state travels in the checkpoint)' -r -f -a "adamw\t'AdamW (torch.optim.AdamW)'
lamb\t'LAMB (torch_optimizer.Lamb)'
nesterov\t'SGD with Nesterov momentum (DiLoCo\'s outer step; torch.optim.SGD(nesterov=True))'"
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l lr -d 'Peak learning rate' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l schedule -d 'Learning-rate schedule over epochs' -r -f -a "constant\t''
warmup-cosine\t''"
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l warmup -d 'Warm-up epochs (warmup-cosine)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l total -d 'Epoch at which the cosine reaches 10% of the peak (warmup-cosine)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l epoch -d 'Global epoch for the schedule [default: the optimizer\'s step count]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l weight-decay -d 'Weight decay (applied to ≥2-D parameters only) [default: 0.1; 0 with nesterov]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l beta1 -d 'First-moment decay' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l beta2 -d 'Second-moment decay' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l eps -d 'Denominator epsilon' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l momentum -d 'Momentum (nesterov)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l clip -d 'Clip the global gradient norm to this value (0: no clipping) [default: 1; 0 with nesterov]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -s o -l output -d 'The new checkpoint folder' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l force -d 'Replace the output folder if it exists'
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -l json -d 'Print the result as one JSON line'
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand apply" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand keygen" -s o -l output -d 'Key file to create (mode 0600; never overwritten); prints its public key' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand keygen" -l public -d 'Print the public key of this existing key file instead (for the peers file)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand keygen" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand keygen" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand keygen" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -l only -d 'Keep only these peers (comma-separated names), in the file\'s order' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -s o -l output -d 'Write to FILE (atomically) instead of stdout' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -l toml -d 'Print a peers file (TOML) instead of one JSON object'
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand peers" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l peers -d 'The round\'s peers ([[peer]] name, addr, pubkey, bandwidth)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l me -d 'This peer\'s name in the peers file' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l key -d 'This peer\'s key (from `dtrain keygen`)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l round -d 'Round id (all peers use the same; frames of other rounds are refused)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l in -d 'This peer\'s gradient (never modified)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l out -d 'The averaged gradient, written only if the round succeeds' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l transcript -d 'Signed JSON record of the round' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l wire -d 'Number format on the wire' -r -f -a "f32\t'f32 as is'
bf16\t'bfloat16: half the bytes'
q8\t'8-bit blocks with an f32 scale: about a quarter'
ternary\t'{−s, 0, +s} per block of 64 with a bf16 scale: 1.875 bits a value (with --residual)'"
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l deadline -d 'Seconds by which the round finishes or fails' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l weight -d 'Averaging weight [default: `sequences` in the input\'s metadata; 0 receives without contributing]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l clip -d 'Byzantine-robust averaging by owners: centered:TAU (TAU = RMS clip radius per element)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l max-rate -d 'Limit this peer\'s sending rate (MB/s)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l chunk -d 'Elements per chunk' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l min-peers -d 'Members needed to finish [default: a majority of the peers file]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l residual -d 'Error feedback: keep what the lossy --wire loses in FILE, add it next round (missing: zeros; written only when the round succeeds; publish the file as it was before the round: `verify --residual` checks what was sent with it)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l inner-steps -d 'DiLoCo: the round averages pseudo-gradients of H inner steps; an --in that says otherwise is refused, and peers expecting another H do not connect' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l allow-nonfinite -d 'Send and accept contributions containing NaN or Inf'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l floor -d 'Benchmark the transport floor: same bytes, connections and output writes, no MAC, no arithmetic'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -l json -d 'Print a JSON summary (with where the time went: "breakdown")'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand reduce" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -f -a "announce" -d 'Sign this miner\'s announcement for an epoch (name, key, address or relay)'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -f -a "decide" -d 'The validator: decide the epoch\'s roster from the announcements, signed'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -f -a "show" -d 'Check a roster (pinned validator key, epoch) and print it or write its peers file'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and not __fish_seen_subcommand_from announce decide show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l key -d 'The miner\'s key (its public key is its identity in the roster)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l name -d 'Its peer name' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l addr -d 'HOST:PORT where it accepts reduce connections' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l epoch -d 'The epoch this announcement is for' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l uid -d 'The uid it holds (the validator believes the registry)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l upload -d 'Measured upload rate, MB/s (a capacity hint)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -s o -l output -d 'Write here (atomically) instead of stdout' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -l relay -d 'It accepts no connections: reach it through the validator\'s relay'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from announce" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l key -d 'The validator\'s key (signs the roster)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l name -d 'The validator\'s peer name (a member, weight 0)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l addr -d 'HOST:PORT where the validator accepts reduce connections' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l epoch -d 'The epoch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l registry -d 'Which keys hold which uids (TOML: [[miner]] uid, pubkey); without it any signed announcement may join' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l exclude -d 'Leave these miners out (comma-separated names; e.g. a FAIL streak)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l max-members -d 'Most miners in the round (the fastest announced uploads first)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l relay -d 'The relay offered to miners that announce no address (HOST:PORT of `dtrain relay`)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l deadline -d 'The round\'s reduce deadline, seconds' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -l max-weight -d 'Most averaging weight (sequences) one member may announce' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -s o -l output -d 'Write the signed roster here (atomically)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from decide" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -l validator-pubkey -d 'The validator\'s public key (pinned: a roster signed by another key is refused)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -l epoch -d 'The epoch it must be for' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -l peers-toml -d 'Write the peers file reduce reads (atomically) instead of printing the roster' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "announce" -d 'Sign this miner\'s announcement for an epoch (name, key, address or relay)'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "decide" -d 'The validator: decide the epoch\'s roster from the announcements, signed'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "show" -d 'Check a roster (pinned validator key, epoch) and print it or write its peers file'
complete -c dtrain -n "__fish_dtrain_using_subcommand roster; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -l listen -d 'HOST:PORT to listen on' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -l max-connections -d 'Most connections held at once (parked and spliced)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -l max-per-ip -d 'Most connections from one address' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand relay" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l receipt -d 'The miner\'s receipt' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l grad -d 'The miner\'s gradient file' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l model -d 'The checkpoint the gradient should come from' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l tokens -d 'The token shard the receipt names' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l pubkey -d 'The miner\'s public key (hex); without it the receipt\'s own key is used' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l spec -d 'Data spec of the miner\'s assigned rows: re-fetch and re-tokenize them' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l source -d 'Read the spec\'s rows from local parquet files instead of the Hub' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l sample -d 'Recompute K random micro-batches (DiLoCo: K segments) instead of all' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-steps -d 'DiLoCo: H inner optimizer steps over H equal batches of the sequences; the file is the pseudo-gradient θ₀ − θ_H' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-optim -d 'Inner optimizer' -r -f -a "adamw\t'AdamW (torch.optim.AdamW)'
lamb\t'LAMB (torch_optimizer.Lamb)'
nesterov\t'SGD with Nesterov momentum (DiLoCo\'s outer step; torch.optim.SGD(nesterov=True))'"
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-lr -d 'Inner learning rate' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-weight-decay -d 'Inner weight decay (≥2-D parameters, as apply)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-clip -d 'Inner gradient-norm clip (0: none)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-beta1 -d 'Inner Adam β₁' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-beta2 -d 'Inner Adam β₂' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l inner-eps -d 'Inner Adam ε' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l state-every -d 'Publish the loop\'s state after every K inner steps (and the last) [default: H/8 rounded up, so a validator can recompute an eighth]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l residual -d 'The error-feedback residual the miner published before the round (`reduce --residual`): what it sent is its gradient plus this' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l states -d 'DiLoCo: the folder of the miner\'s published states' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l previous-receipt -d 'DiLoCo: the miner\'s receipt of the previous round, for a loop that carries its inner state (train-step --inner-state)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l transcript -d 'Owners\' reduce transcripts: check what the miner sent them' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l peers -d 'The round\'s peers file: a transcript counts only when signed by the key it pins for its writer' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l miner -d 'Whose work this must be (the receipt\'s miner must be this name)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l round -d 'The round the receipt must be for (e.g. epoch-12)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l validator -d 'This validator\'s peer name: its own transcript\'s records are never disputed' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l seed -d 'The subnet\'s assignment seed: with --epoch, --uid and --rows the spec must be exactly the miner\'s rows' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l epoch -d 'The epoch of the assignment' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l uid -d 'The miner\'s uid (the validator\'s record, not the miner\'s word)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l rows -d 'Rows each miner is assigned' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l held-out -d 'Rows at the corpus\'s end held out for evaluation (never assigned)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l data-repo -d 'The subnet\'s dataset repository' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l data-config -d 'The subnet\'s dataset config' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l data-revision -d 'The subnet\'s dataset revision' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l device -d 'auto, cpu, cuda or cuda:N' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -l json -d 'One JSON verdict on stdout instead of a table'
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand verify" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l verdicts -d 'verify --json verdicts, one JSON object per line ("-": stdin)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l receipt -d 'The epoch\'s receipts: their miners count as expected (no verdict: 0)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l transcript -d 'The epoch\'s reduce transcripts (bandwidth and participation)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l peers -d 'The round\'s peers file: a transcript counts only when signed by the key it pins for its writer' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l state -d 'Previous state (missing: a fresh start)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l state-out -d 'New state, written atomically' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l weights-out -d 'Per-miner weights and factors (JSON), written atomically [default: stdout]' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l epoch -d 'The epoch being scored (recorded in the state; a repeated epoch is not counted twice)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l w-gradient-steps -d 'Weight of gradient·steps in the raw score' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l w-bandwidth -d 'Weight of bandwidth in the raw score' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l alpha -d 'EMA coefficient over epochs' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -l explain -d 'Print a table of every factor on stderr'
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand score" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -f -a "append" -d 'Append a signed entry for an epoch'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -f -a "show" -d 'Print the entries (or the last one)'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -f -a "verify" -d 'Check the chain and every signature'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -f -a "plot" -d 'Draw the loss curves and contributors per epoch (PNG, or SVG by extension)'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and not __fish_seen_subcommand_from append show verify plot help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l ledger -d 'The ledger file (created if absent; rewritten atomically)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l key -d 'The validator\'s key' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l epoch -d 'The epoch this entry records (must follow the last entry\'s)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l step -d 'Global optimizer step after this epoch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l model -d 'The new model: a checkpoint folder (its hash is taken) or a blake3 hex' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l tokens -d 'Tokens trained on so far' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l contributors -d 'Who contributed (comma-separated)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l scores -d 'The epoch\'s scores/weights file (its blake3 is recorded)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l loss -d 'Token-weighted mean training loss of the verified miners' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l eval-loss -d 'The validator\'s loss of the new model on held-out rows' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -l tag -d 'The model repo\'s tag that holds the new model' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from append" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -l ledger -d 'The ledger file' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -l last -d 'Only the last entry'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -l json -d 'Each entry as its JSON line, with its hash'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -l ledger -d 'The ledger file' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -l hub -d 'A model repo on the Hub (HF_ENDPOINT): verify the ledger published with its tags' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -l pubkey -d 'The validator\'s public key (hex): every entry must be signed by it (a ledger proves nothing about a key it carries itself)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -l ledger -d 'The ledger file' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -s o -l output -d 'The picture: a .png or .svg file' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -l width -d 'Width in pixels' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -l height -d 'Height in pixels' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from plot" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "append" -d 'Append a signed entry for an epoch'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the entries (or the last one)'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check the chain and every signature'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "plot" -d 'Draw the loss curves and contributors per epoch (PNG, or SVG by extension)'
complete -c dtrain -n "__fish_dtrain_using_subcommand ledger; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l input -d 'The points, as JSON lines (\'-\': stdin)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -s o -l output -d 'The picture: a .png or .svg file' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l title -d 'The chart\'s title' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l x-label -d 'The x axis\' label' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l y-label -d 'The y axis\' label' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l width -d 'Width in pixels' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l height -d 'Height in pixels' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -l log-x -d 'A logarithmic x axis (every x must be above 0)'
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand plot" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l model -d 'Checkpoint folder' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l tokens -d 'Token shard' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l seq-len -d 'Sequence length T (sequence k is tokens [k·T, k·T+T+1))' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l micro-batch -d 'Sequences per micro-batch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l sequences -d 'Sequences to use, e.g. 0-63 or 1,5,9-12 [default: all whole sequences]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l device -d 'auto, cpu, cuda or cuda:N' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l precision -d 'Compute precision of matmuls and attention' -r -f -a "f32\t''
bf16\t''"
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l sketch-k -d '±1 projections per micro-batch gradient sketch in the receipt (0: none)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l logits-out -d 'Also write every position\'s logits ("logits": [N, T, V], f32 safetensors)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -l json -d 'Print the result as one JSON line'
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand eval" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -l repo -d 'Also ask the Hub for this model repo\'s newest epoch tag: how far behind the node is' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -l ledger -d 'The validator\'s ledger, if not WORK/ledger.jsonl' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -s o -l output -d 'Write to FILE (atomically) instead of stdout' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -l retries -d 'Retries per HTTP request (with --repo)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -l json -d 'Print one JSON object'
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -l prometheus -d 'Print Prometheus text (node_exporter textfile collector format)'
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand status" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l repo -d 'ORG/NAME on the Hub, or file://ROOT/ORG/NAME (a local hub folder)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l tag -d 'Tag to create (the seed tags with the epoch number)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l revision -d 'Branch to commit to' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l message -d 'Commit message [default: "Epoch TAG"]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l retries -d 'Retries per request (exponential backoff with jitter)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l create -d 'Create the repository if it does not exist'
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -l json -d 'Print the result as one JSON line'
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand push" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -l repo -d 'ORG/NAME on the Hub, or file://ROOT/ORG/NAME' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -l tag -d 'The tag to fetch' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -s o -l output -d 'Checkpoint folder to create (replaced atomically)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -l retries -d 'Retries per HTTP request (exponential backoff)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -l latest-epoch -d 'Fetch the highest numeric tag (the latest epoch)'
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -l json -d 'Print the result as one JSON line'
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand pull" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and not __fish_seen_subcommand_from serve help" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and not __fish_seen_subcommand_from serve help" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and not __fish_seen_subcommand_from serve help" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and not __fish_seen_subcommand_from serve help" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and not __fish_seen_subcommand_from serve help" -f -a "serve" -d 'Serve a folder over the Hugging Face Hub HTTP API (a local hub / mirror)'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and not __fish_seen_subcommand_from serve help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l root -d 'Folder holding datasets/{org}/{name}/… and {org}/{name}/… (models)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l addr -d 'Address to listen on (port 0 picks a free port; the URL is printed)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l token -d 'Require `Authorization: Bearer TOKEN` on every request; this token may write every repo' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l tokens -d 'Writers\' tokens: a TOML file of `[[writer]]` tables (name, token, write = ["org/repo", "org/*"]); each token reads everything and writes only the repos it names' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l max-per-ip -d 'Most connections open at once from one address (more are answered 503)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l max-connections -d 'Most connections open at once in all (more are answered 503)' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l head-timeout -d 'Seconds a client has to send a request\'s head, idle keep-alive time included' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l fail-every -d 'Fault injection: answer 503 to every K-th request' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l fail-first -d 'Fault injection: answer 503 to the first N requests' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l drop-every -d 'Fault injection: cut every K-th request half way through its body' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -l slow-ms -d 'Fault injection: wait MS milliseconds before every response' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from serve" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from help" -f -a "serve" -d 'Serve a folder over the Hugging Face Hub HTTP API (a local hub / mirror)'
complete -c dtrain -n "__fish_dtrain_using_subcommand hub; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -l out -d 'Folder that receives man/ and completions/' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -s v -l verbose -d 'More log lines on stderr: -v info, -vv debug, -vvv everything'
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -s q -l quiet -d 'Errors only on stderr: no warnings, no summary line, no progress bar'
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "hash" -d 'blake3 of files, or of checkpoints (their model identity)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "info" -d 'Show libtorch, CUDA, threads and build features'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "fetch-shard" -d 'Stream a miner\'s assigned rows of fineweb from the Hub (JSON lines)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "tokenize" -d 'Turn text into a GPT-2 token shard (llm.c format)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "init" -d 'Create a freshly initialised GPT-2 checkpoint'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "train-step" -d 'Compute a GPT-2 gradient on a token shard; write it and a receipt'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "apply" -d 'Step the optimizer (AdamW or LAMB) with an averaged gradient'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "keygen" -d 'Create an ed25519 key for reduce, receipts and the ledger'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "peers" -d 'Read a peers file (checked as reduce reads it): JSON, or a file of some of them'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "reduce" -d 'Butterfly all-reduce of gradient files with the round\'s peers'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "roster" -d 'Per-epoch membership: signed announcements, the validator\'s signed roster, its peers file'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "relay" -d 'Forward reduce connections to peers that accept none (behind NAT)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "verify" -d 'Check a miner\'s gradient against its receipt: signature, data, recomputation'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "score" -d 'Turn verdicts, receipts and reduce transcripts into miner weights'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "ledger" -d 'The signed, hash-chained progress ledger'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "plot" -d 'Draw named series of points from JSON lines (PNG, or SVG by extension)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "eval" -d 'Mean loss of a checkpoint on a token shard'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "status" -d 'Where a miner or validator stands: epoch, loss, last reduce, verdicts, lag'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "push" -d 'Publish a checkpoint to the Hub, tagged (e.g. with the epoch)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "pull" -d 'Fetch a tagged checkpoint from the Hub'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "hub" -d 'The local hub: serve a folder over the Hugging Face Hub API'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "gen-docs" -d 'Write man pages and shell completions (for packagers)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from hash info fetch-shard tokenize init train-step apply keygen peers reduce roster relay verify score ledger plot eval status push pull hub gen-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "announce" -d 'Sign this miner\'s announcement for an epoch (name, key, address or relay)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "decide" -d 'The validator: decide the epoch\'s roster from the announcements, signed'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from roster" -f -a "show" -d 'Check a roster (pinned validator key, epoch) and print it or write its peers file'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "append" -d 'Append a signed entry for an epoch'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "show" -d 'Print the entries (or the last one)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "verify" -d 'Check the chain and every signature'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from ledger" -f -a "plot" -d 'Draw the loss curves and contributors per epoch (PNG, or SVG by extension)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and __fish_seen_subcommand_from hub" -f -a "serve" -d 'Serve a folder over the Hugging Face Hub HTTP API (a local hub / mirror)'
