# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dtrain_global_optspecs
    string join \n h/help V/version
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

complete -c dtrain -n "__fish_dtrain_needs_command" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_needs_command" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "info" -d 'Show libtorch, CUDA, threads and build features'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "tokenize" -d 'Turn text into a GPT-2 token shard (llm.c format)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "gen-docs" -d 'Write man pages and shell completions (for packagers)'
complete -c dtrain -n "__fish_dtrain_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -l json -d 'Print one JSON object instead of lines'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand info" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l format -d 'How the input is cut into documents' -r -f -a "jsonl\t'One JSON object per line; its "text" field is a document'
text\t'Paragraphs separated by blank lines are documents'
lines\t'Every non-empty line is a document'"
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s o -l output -d 'Output shard (default: standard output, if it is not a terminal)' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l tokenizer -d 'Tokenizer: a tokenizer.json, a folder with vocab.json + merges.txt, or hf:REPO [default: the embedded GPT-2 / distilgpt2 tokenizer]' -r
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l lossy -d 'Replace invalid UTF-8 instead of failing'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -l json -d 'Print a JSON summary line on stderr'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dtrain -n "__fish_dtrain_using_subcommand tokenize" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -l out -d 'Folder that receives man/ and completions/' -r -F
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -s h -l help -d 'Print help'
complete -c dtrain -n "__fish_dtrain_using_subcommand gen-docs" -s V -l version -d 'Print version'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from info tokenize gen-docs help" -f -a "info" -d 'Show libtorch, CUDA, threads and build features'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from info tokenize gen-docs help" -f -a "tokenize" -d 'Turn text into a GPT-2 token shard (llm.c format)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from info tokenize gen-docs help" -f -a "gen-docs" -d 'Write man pages and shell completions (for packagers)'
complete -c dtrain -n "__fish_dtrain_using_subcommand help; and not __fish_seen_subcommand_from info tokenize gen-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
