#!/bin/sh
# The node image's entrypoint contract: `docker run IMAGE -e 'code'` or `docker run IMAGE
# script.js` runs node, and any command the image has (`node ...`, `sh`) runs as given.
set -e
first=${1-}
case "$first" in
  -*) set -- node "$@" ;;
  *)
    if [ -z "$(command -v "$first")" ] || { [ -f "$first" ] && [ ! -x "$first" ]; }; then
      set -- node "$@"
    fi
    ;;
esac
exec "$@"
