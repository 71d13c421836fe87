#!/usr/bin/env bash
# One-time set-up on a fresh machine: Python requirements, the browser used by the
# book's tests, and the control-plane binaries (built from the Go module proxy once,
# then cached). Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt
# kdlib itself, editable: `import kdlib` works from any directory, and it finds this checkout.
python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .

# Headless Chromium renders the book's charts in the tests (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the book's browser test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: chromium is missing (the book's browser test will fail); install Debian's 'chromium'" >&2
  fi
fi

# Real nodes (real kubelet and containers, the k8s and kd baselines): Debian's container
# runtime, CNI plugins and tools. Optional: without them those baselines say "not measured".
if ! command -v containerd >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || [ ! -x /usr/lib/cni/bridge ] \
   || ! command -v iptables >/dev/null 2>&1 || ! command -v conntrack >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing containerd, runc, containernetworking-plugins, iptables, conntrack for real nodes" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      containerd runc containernetworking-plugins iptables conntrack >/dev/null
  else
    echo "setup: containerd/runc/CNI plugins missing: real nodes (k8s, kd baselines) will not be measured" >&2
  fi
fi

# The SSH backend's tests run sshd in network namespaces on this machine (Debian's
# openssh-server; the image's policy-rc.d keeps apt from starting a system sshd).
if [ ! -x /usr/sbin/sshd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's openssh-server for the SSH backend's test hosts" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
  else
    echo "setup: /usr/sbin/sshd is missing (the SSH tests will be skipped); install Debian's 'openssh-server'" >&2
  fi
fi

# The VM test hosts (tests/vmhosts.py): QEMU boots Debian 12 VMs (systemd, cgroup v2) from a
# base image that mmdebstrap builds on first use (tests/vmimage.py, cached under ~/.cache/kdlib/vm/).
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v qemu-img >/dev/null 2>&1 \
   || ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v mke2fs >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing qemu-system-x86, qemu-utils, mmdebstrap, e2fsprogs for the VM test hosts" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      qemu-system-x86 qemu-utils mmdebstrap e2fsprogs >/dev/null
  else
    echo "setup: QEMU or mmdebstrap missing: the VM tests will be skipped" >&2
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  echo "setup: Go >= 1.24 is needed to build the control plane (or pass --bin-dir with your own binaries)" >&2
  exit 1
fi
python3 -m kdlib build
