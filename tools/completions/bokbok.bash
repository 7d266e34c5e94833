# bash completion for `bokbok` (installed by meson to
# $datadir/bash-completion/completions/bokbok; or source this file).
#
# Subcommands and their options are read from the tool's own help (`bokbok --help`,
# `bokbok help COMMAND`), so they always match the installed version. After
# `bokbok call ADDRESS` (or `describe ADDRESS`) the first FIELD completes to the
# server's method names, from `bokbok list ADDRESS` (bounded to 3 s; nothing when the
# tool has no `list`, or the server does not answer).

# The subcommands, from the "commands:" section of `bokbok --help`.
_bokbok_commands() {
  "$1" --help 2>/dev/null | awk '/^commands:/ {on = 1; next} /^$/ {on = 0} on && /^  [a-z]/ {print $1}'
}

# The options COMMAND's help lists: the leading words that start with '-' of its
# indented lines ("  -v, --trace  ...", "  --user NAME ...").
_bokbok_options() {
  "$1" help "$2" 2>/dev/null | awk '/^ +-/ {
    for (i = 1; i <= NF && $i ~ /^-/; i++) { sub(/,$/, "", $i); sub(/=.*/, "", $i); print $i } }' | sort -u
}

# Method names: the first word of each line `bokbok list ADDRESS` prints.
_bokbok_methods() {
  timeout 3 "$1" list "$2" 2>/dev/null </dev/null | awk 'NF {print $1}'
}

_bokbok() {
  local tool=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]}
  local prev=""
  (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
  COMPREPLY=()
  if (( COMP_CWORD == 1 )); then
    COMPREPLY=($(compgen -W "$(_bokbok_commands "$tool") help --help --version" -- "$cur"))
    return 0
  fi
  local cmd=${COMP_WORDS[1]}
  if [[ $cmd == help ]]; then
    (( COMP_CWORD == 2 )) && COMPREPLY=($(compgen -W "$(_bokbok_commands "$tool")" -- "$cur"))
    return 0
  fi
  case $prev in
    --key-file | --users) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
    --timeout | --user) return 0 ;;  # a value of the user's own
  esac
  # Where are we: count the words that are no option (nor an option's value) before cur.
  local i word plain=0 address="" ended=""
  for (( i = 2; i < COMP_CWORD; i++ )); do
    word=${COMP_WORDS[i]}
    if [[ -z $ended && $word == -- ]]; then ended=1; continue; fi
    if [[ -z $ended && $word == -* ]]; then
      case $word in --timeout | --user | --key-file | --users) (( i++ )) ;; esac
      continue
    fi
    (( plain++ ))
    (( plain == 1 )) && address=$word
  done
  if [[ $cmd == call || $cmd == describe ]] && (( plain == 1 )) && [[ $cur != -* || -n $ended ]]; then
    COMPREPLY=($(compgen -W "$(_bokbok_methods "$tool" "$address")" -- "$cur"))
    return 0
  fi
  # Options: before the first FIELD (`bokbok call` stops parsing options there).
  if [[ -z $ended && $cur == -* ]] && ! [[ $cmd == call && $plain -ge 2 ]]; then
    COMPREPLY=($(compgen -W "$(_bokbok_options "$tool" "$cmd")" -- "$cur"))
    return 0
  fi
  return 0
}

complete -F _bokbok bokbok
