# The sidecar's uploadpack.packObjectsHook, run by upload-pack once per fetch with
# `git [--shallow-file ""] pack-objects ...` as arguments and pack-objects' input on stdin.
#
# The sidecar starts upload-pack with one end of a socket pair on fd 3 (inherited through
# upload-pack) and GITMIRROR_PACK_CACHE_FD=3. The hook sends the arguments and stdin there
# and waits for one line: `splice` means the sidecar writes the pack into the response
# itself, so the hook exits 0 without output; anything else (the cache is full, the request
# is one it does not take, the sidecar is gone) runs pack-objects as upload-pack would have.
# A POSIX shell script starts in a millisecond, once per fetch; only processes the sidecar
# started hold fd 3, so nothing else can ask the cache for a pack.
#
# Request: "gitmirror-pack-request 1", the argument count, one argument per line, the byte
# count of stdin, then stdin.

if [ "${GITMIRROR_PACK_CACHE_FD:-}" != 3 ]; then exec "$@"; fi
# ${#stdin} must count bytes; a sidecar that hangs up must fail a write, not kill the hook.
LC_ALL=C
export LC_ALL
trap '' PIPE
# Command substitution drops trailing newlines: keep them with a sentinel.
stdin=$(cat; echo .)
stdin=${stdin%.}
if {
  printf 'gitmirror-pack-request 1\n%s\n' "$#"
  for arg in "$@"; do printf '%s\n' "$arg"; done
  printf '%s\n' "${#stdin}"
  printf '%s' "$stdin"
} >&3 2>/dev/null && read -r reply <&3 && [ "$reply" = splice ]; then
  exit 0
fi
trap - PIPE
printf '%s' "$stdin" | "$@"
