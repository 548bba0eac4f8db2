#!/bin/sh
# A stand-in for forge-worker/forge-critic that never connects: the test
# process itself connects a DEALER with this process's routing id and plays
# the child's side of the protocol (including malformed messages).
exec sleep 1000
