#!/bin/sh
# Provision Superset from /app/bi (metadata database, admin user, bi/assets), then serve it. The
# import reads the published marts' columns, so it fails until the pipeline has published once;
# compose restarts the service until then.
set -eu
superset db upgrade
superset init
python /app/bi/provision.py
exec gunicorn --bind 0.0.0.0:8088 --workers 2 --worker-class gthread --threads 4 \
    --timeout 120 --graceful-timeout 5 "superset.app:create_app()"
