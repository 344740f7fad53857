#!/usr/bin/env bash
# Starts the local Redis (127.0.0.1:6379) and Mosquitto (127.0.0.1:1883) if they are not running.
set -euo pipefail

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  if [ -f /etc/mosquitto/mosquitto.conf ]; then
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
  else
    mosquitto -d -p 1883
  fi
fi
for _ in $(seq 1 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && exit 0
  sleep 0.1
done
echo "error: Redis or Mosquitto did not come up on 127.0.0.1" >&2
exit 1
