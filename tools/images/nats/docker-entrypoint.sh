#!/bin/sh
# Entrypoint of the local NATS image, as in the official nats:<version>-alpine image:
# arguments that start with a dash (or none) are nats-server's; anything else is run as is.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- nats-server "$@"
fi
exec "$@"
