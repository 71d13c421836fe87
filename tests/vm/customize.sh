#!/bin/sh
# mmdebstrap --customize-hook for the VM test hosts' base image (tests/vmimage.py): $1 is the
# root filesystem. What a user's cluster node has after its installation (systemd, sshd,
# containerd as a unit with the systemd cgroup driver, the kernel settings kubeadm wants),
# and nothing that identifies one VM: each VM gets its machine-id, hostname, address, SSH
# host key and root's authorized key at boot (tests/vmhosts.py, kernel command line).
set -eu
R="$1"

: > "$R/etc/machine-id"                       # empty: systemd makes one from the VM's -uuid
rm -f "$R/var/lib/dbus/machine-id"
echo kdlib-vm > "$R/etc/hostname"             # systemd.hostname= on the command line wins
printf '127.0.0.1 localhost\n' > "$R/etc/hosts"
printf '' > "$R/etc/resolv.conf"              # no DNS: nothing leaves this machine

# sshd: key only; the host key is the VM's own (provisioned), not one baked into the image.
rm -f "$R"/etc/ssh/ssh_host_*
cat > "$R/etc/ssh/sshd_config.d/kdlib.conf" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 64
MaxStartups 64
CONF

# Per-VM identity from the kernel command line (base64 values: no spaces there).
cat > "$R/usr/local/sbin/kdlib-provision" <<'SCRIPT'
#!/bin/sh
set -eu
value() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | head -n 1; }
key=$(value kdlib.authorized_key); host=$(value kdlib.host_key)
[ -n "$key" ] && [ -n "$host" ] || { echo "kdlib-provision: no kdlib.authorized_key/host_key" >&2; exit 1; }
install -d -m 0700 /root/.ssh
echo "$key" | base64 -d > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
umask 077
echo "$host" | base64 -d > /etc/ssh/ssh_host_ed25519_key
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
SCRIPT
chmod 0755 "$R/usr/local/sbin/kdlib-provision"
cat > "$R/etc/systemd/system/kdlib-provision.service" <<'UNIT'
[Unit]
Description=kdlib test VM: root's authorized key and the SSH host key from the kernel command line
Before=ssh.service
DefaultDependencies=no
After=local-fs.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kdlib-provision
RemainAfterExit=yes
[Install]
RequiredBy=ssh.service
UNIT

# Network: the address and a default route from the kernel's ip= option (turned into a
# .network file by systemd-network-generator), systemd-networkd applies it.
chroot "$R" systemctl enable kdlib-provision.service systemd-networkd.service systemd-network-generator.service
chroot "$R" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  systemd-networkd-wait-online.service

# What kubeadm's installation guide has a node do before anything else.
printf 'overlay\nbr_netfilter\n' > "$R/etc/modules-load.d/kdlib.conf"
cat > "$R/etc/sysctl.d/90-kdlib.conf" <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF

# containerd as a unit, its default configuration with the systemd cgroup driver (kubeadm's
# recommendation where systemd is PID 1); the kubelet's CNI path is /opt/cni/bin, Debian's /usr/lib/cni.
mkdir -p "$R/etc/containerd"
chroot "$R" containerd config default > "$R/etc/containerd/config.toml"
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' "$R/etc/containerd/config.toml"
grep -q 'SystemdCgroup = true' "$R/etc/containerd/config.toml"
mkdir -p "$R/opt/cni"
ln -sfn /usr/lib/cni "$R/opt/cni/bin"

# A small initramfs: only what finds the virtio disk and mounts ext4.
mkdir -p "$R/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$R/etc/initramfs-tools/conf.d/kdlib"
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\ncrc32c_generic\n' > "$R/etc/initramfs-tools/modules"
chroot "$R" update-initramfs -u -k all

rm -rf "$R/var/cache/apt/archives"/*.deb "$R/var/lib/apt/lists"/*_Packages
