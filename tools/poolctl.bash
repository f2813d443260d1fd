# SPDX-License-Identifier: MIT
# bash completion for poolctl(1): its commands, their options, and a path
# after --socket. Installed as <completionsdir>/poolctl, where
# bash-completion loads it on first use; `source tools/poolctl.bash` works
# too, as it needs nothing from the bash-completion package.
# tests/test_completion.sh checks it against `poolctl --help` and poolctl's
# own option parser.

_poolctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="stats top procs show warnings classes chans ping version help"
    local i cmd="" at=0
    COMPREPLY=()

    # The command is the first word that is neither an option nor the
    # argument of --socket.
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -s | --socket) ((i++)) ;;
        -*) ;;
        *)
            cmd=${COMP_WORDS[i]}
            at=$i
            break
            ;;
        esac
    done

    case $prev in
    -s | --socket)
        [[ -z $cmd ]] || return 0
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
        ;;
    -w | --watch)
        [[ $cmd == stats ]] && COMPREPLY=($(compgen -W "1 2 5 10" -- "$cur"))
        return 0
        ;;
    -d | --delay)
        [[ $cmd == top ]] && COMPREPLY=($(compgen -W "0.5 1 2 5" -- "$cur"))
        return 0
        ;;
    -n | --iterations)
        return 0
        ;;
    -o | --sort)
        case $cmd in
        top) COMPREPLY=($(compgen -W "inuse growth allocs pid" -- "$cur")) ;;
        procs) COMPREPLY=($(compgen -W "inuse growth pid" -- "$cur")) ;;
        esac
        return 0
        ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--socket --help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return 0
    fi

    local opts="" w
    case $cmd in
    stats) opts="--json --prometheus --watch --help" ;;
    top) opts="--delay --sort --iterations --help" ;;
    procs) opts="--json --sort --help" ;;
    classes | chans) opts="--json --help" ;;
    show | warnings) opts="--help" ;;
    esac
    # Options already given are not offered again; --json and --prometheus
    # exclude each other.
    for ((i = at + 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
        --json | --prometheus) opts=" $opts "; opts=${opts/ --json / }; opts=${opts/ --prometheus / } ;;
        --*=*) opts=" $opts "; opts=${opts/ ${w%%=*} / } ;;
        --*) opts=" $opts "; opts=${opts/ $w / } ;;
        esac
    done
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return 0
}
complete -F _poolctl poolctl
