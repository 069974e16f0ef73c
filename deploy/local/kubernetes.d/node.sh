# shellcheck shell=bash
# The real node of deploy/local/kubernetes: Debian's containerd + runc + CNI plugins and a kubelet
# built from kubernetes.d (same module graph as the control plane). Sourced by
# deploy/local/kubernetes after lib.sh and its own variables; not run on its own.
#
# The node is named `localhost`: the kubelet refuses a loopback node IP, so the API server reaches
# it by its Hostname address (--kubelet-preferred-address-types Hostname,InternalIP).
# It advertises `nvidia.com/gpu: $NODE_GPUS` as a plain extended resource: there is NO physical
# GPU; the count only makes the scheduler and tracectl's leases account for one.

NODE_NAME=localhost
KUBELET_PORT=${TRACECTL_K8S_KUBELET_PORT:-10250}
KUBELET_HEALTHZ_PORT=${TRACECTL_K8S_KUBELET_HEALTHZ_PORT:-10248}
NODE_GPUS=${TRACECTL_K8S_NODE_GPUS:-1}
NODE_LOCAL_PVS=${TRACECTL_K8S_NODE_LOCAL_PVS:-6}
REGISTRY_HOSTPORT="127.0.0.1:${TRACECTL_REGISTRY_PORT:-5001}"
NODE_DIR="$DATA/node"
CTR_SOCK="$NODE_DIR/containerd.sock"
CNI_BRIDGE=tracectl-cni0
CNI_SUBNET=10.244.7.0/24
PAUSE_IMAGE=tracectl.local/pause:1
IMAGES_CACHE="$TRACECTL_CACHE/images"
NODE_PACKAGES=(containerd runc containernetworking-plugins umoci skopeo debootstrap gcc libc6-dev)
# Host paths the kubelet / containerd / CNI write to whatever their flags say. Those that did not
# exist before `start` are listed in $NODE_DIR/host-paths and removed by `stop`.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd /var/run/netns)

ctr_() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }

# --- install -----------------------------------------------------------------------------------
node_packages() {
  local missing=() p
  for p in "${NODE_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}: run 'apt-get install -y ${missing[*]}'"
  log "installing ${missing[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$CACHE/apt.log" 2>&1 \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$CACHE/apt.log" 2>&1 &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$CACHE/apt.log" 2>&1; } \
    || { tail -n 20 "$CACHE/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $CACHE/apt.log)"; }
}

# The sandbox ("pause") image: a static C program that sleeps and reaps, packed with umoci.
pause_image() {
  local dir="$IMAGES_CACHE/pause" src
  src=$(cat <<'EOC'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void die(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction a = {0}, r = {0};
  a.sa_handler = die; sigaction(SIGINT, &a, 0); sigaction(SIGTERM, &a, 0);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, 0);
  for (;;) pause();
}
EOC
)
  if [ -f "$dir/pause-oci.tar" ] && [ "$(cat "$dir/STAMP" 2>/dev/null)" = "$(echo "$src" | sha256sum | cut -c1-16)" ]; then return 0; fi
  rm -rf "$dir"; mkdir -p "$dir/rootfs"
  echo "$src" >"$dir/pause.c"
  gcc -Os -static -o "$dir/rootfs/pause" "$dir/pause.c" && strip "$dir/rootfs/pause" || die "gcc could not build the pause program"
  (cd "$dir" && umoci init --layout oci && umoci new --image oci:1 && umoci unpack --rootless --image oci:1 bundle >/dev/null \
    && rm -rf bundle/rootfs && mv rootfs bundle/rootfs && umoci repack --image oci:1 bundle \
    && umoci config --image oci:1 --config.entrypoint /pause && rm -rf bundle && (cd oci && tar cf ../pause-oci.tar .)) \
    >>"$dir/build.log" 2>&1 || die "umoci could not pack the pause image (log: $dir/build.log)"
  echo "$src" | sha256sum | cut -c1-16 >"$dir/STAMP"
}

node_install() {
  node_packages
  pause_image
  "$DEPLOY_LOCAL_DIR/registry" install 9>&- || die "deploy/local/registry install failed"
}

# --- certificates, configuration -----------------------------------------------------------------
node_pki() {
  client_cert kubelet "system:node:$NODE_NAME" system:nodes
  server_cert kubelet-serving "$NODE_NAME"
  kubeconfig kubelet "system:node:$NODE_NAME"
}

node_config() {
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" "$NODE_DIR/certs.d/$REGISTRY_HOSTPORT" \
    "$NODE_DIR/kubelet/root" "$NODE_DIR/kubelet/pod-logs"
  # No gateway, no masquerade: pods without hostNetwork are isolated (no route off the bridge).
  cat >"$NODE_DIR/cni/net.d/10-tracectl.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "tracectl-local", "plugins": [{"type": "bridge", "bridge": "$CNI_BRIDGE",
 "isGateway": false, "ipMasq": false,
 "ipam": {"type": "host-local", "ranges": [[{"subnet": "$CNI_SUBNET"}]], "dataDir": "$NODE_DIR/cni/ipam"}}]}
EOF
  # The local registry is plain HTTP on loopback: containerd's registry host configuration.
  cat >"$NODE_DIR/certs.d/$REGISTRY_HOSTPORT/hosts.toml" <<EOF
server = "http://$REGISTRY_HOSTPORT"
[host."http://$REGISTRY_HOSTPORT"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  # restrict_oom_score_adj: Guaranteed pods set oom_score_adj -997, which needs CAP_SYS_RESOURCE.
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/certs.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
EOF
  # cgroup v1 on this machine kind: failCgroupV1 false, cgroupfs driver (no systemd here).
  cat >"$NODE_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $PKI/ca.crt}}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CTR_SOCK
failSwapOn: false
failCgroupV1: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $NODE_DIR/kubelet/pod-logs
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
serializeImagePulls: false
EOF
}

record_host_paths() {
  local p
  touch "$NODE_DIR/host-paths"
  for p in "${HOST_PATHS[@]}"; do
    [ -e "$p" ] || grep -qx "$p" "$NODE_DIR/host-paths" || echo "$p" >>"$NODE_DIR/host-paths"
  done
}

# --- lifecycle ---------------------------------------------------------------------------------
containerd_healthy() { ctr --address "$CTR_SOCK" version >/dev/null 2>&1; }
kubelet_healthy() { [ "$(curl -s --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" 2>/dev/null)" = ok ]; }
node_ready() {
  api GET "/api/v1/nodes/$NODE_NAME" 2>/dev/null | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'
}
node_has_gpus() {
  api GET "/api/v1/nodes/$NODE_NAME" 2>/dev/null | tr -d ' \n' | grep -q "\"allocatable\":{[^}]*\"nvidia.com/gpu\":\"$NODE_GPUS\""
}

node_start() {
  node_install
  node_pki
  node_config
  record_host_paths
  start_component containerd containerd_healthy 60 containerd --config "$NODE_DIR/containerd/config.toml"
  if ! ctr_ images ls -q 2>/dev/null | grep -qx "$PAUSE_IMAGE"; then
    ctr_ images import --base-name "${PAUSE_IMAGE%:*}" "$IMAGES_CACHE/pause/pause-oci.tar" >/dev/null \
      || die "could not import the pause image into containerd"
  fi
  start_component kubelet kubelet_healthy 120 "$BIN/kubelet" --config "$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig "$DATA/kubelet.kubeconfig" --root-dir "$NODE_DIR/kubelet/root" \
    --hostname-override "$NODE_NAME" \
    --node-labels "tracectl.io/node=real,nvidia.com/gpu.present=true,nvidia.com/gpu.count=$NODE_GPUS,nvidia.com/gpu.product=extended-resource-no-device" \
    --v 1
  wait_until 120 "node $NODE_NAME Ready" node_ready || die "node $NODE_NAME did not become Ready (log: $DATA/kubelet.log)"
  untaint_real_node
  # An extended resource with no device plugin: the scheduler counts it, nothing backs it.
  # The kubelet resets extended resources when it registers again, so every start sets it.
  api PATCH "/api/v1/nodes/$NODE_NAME/status" \
    "{\"status\":{\"capacity\":{\"nvidia.com/gpu\":\"$NODE_GPUS\"},\"allocatable\":{\"nvidia.com/gpu\":\"$NODE_GPUS\"}}}" \
    application/merge-patch+json >/dev/null || die "could not advertise nvidia.com/gpu on node $NODE_NAME"
  wait_until 30 "nvidia.com/gpu on $NODE_NAME" node_has_gpus || die "node $NODE_NAME does not keep nvidia.com/gpu"
  seed_local_pvs
}

# RWO claims of the class `local` bind to these when their pod is scheduled (WaitForFirstConsumer)
# and the kubelet bind-mounts the folder into the pod.
seed_local_pvs() {
  api_create /apis/storage.k8s.io/v1/storageclasses '{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass",
    "metadata":{"name":"local"},"provisioner":"kubernetes.io/no-provisioner","reclaimPolicy":"Retain",
    "volumeBindingMode":"WaitForFirstConsumer"}'
  local i
  for i in $(seq 0 $((NODE_LOCAL_PVS - 1))); do
    mkdir -p "$DATA/pv/local-pv-$i"
    api_create /api/v1/persistentvolumes "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",
      \"metadata\":{\"name\":\"local-pv-$i\",\"labels\":{\"tracectl.io/pool\":\"local\"}},
      \"spec\":{\"capacity\":{\"storage\":\"1Gi\"},\"accessModes\":[\"ReadWriteOnce\"],
      \"persistentVolumeReclaimPolicy\":\"Retain\",\"storageClassName\":\"local\",
      \"local\":{\"path\":\"$DATA/pv/local-pv-$i\"},
      \"nodeAffinity\":{\"required\":{\"nodeSelectorTerms\":[{\"matchExpressions\":[
        {\"key\":\"kubernetes.io/hostname\",\"operator\":\"In\",\"values\":[\"$NODE_NAME\"]}]}]}}}}"
    if api GET "/api/v1/persistentvolumes/local-pv-$i" 2>/dev/null | grep -q '"phase": *"Released"'; then
      api PATCH "/api/v1/persistentvolumes/local-pv-$i" '[{"op":"remove","path":"/spec/claimRef"}]' \
        application/json-patch+json >/dev/null 2>&1 || true
    fi
  done
}

# stop: the kubelet first (no restarts of what we kill next), then every container containerd
# runs, containerd, the shims left behind, mounts, network namespaces, the bridge, cgroups, and
# the host paths that start created.
node_stop() {
  stop_pid "$DATA/kubelet.pid" 30
  if pid_alive "$DATA/containerd.pid" && containerd_healthy; then
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for _ in $(seq 1 20); do ctr_ tasks ls 2>/dev/null | grep -q RUNNING || break; sleep 0.25; done
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_pid "$DATA/containerd.pid" 20
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CTR_SOCK( |$)" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  node_unmount
  local ns
  for ns in /var/run/netns/cni-*; do
    [ -e "$ns" ] || continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
  rm -rf "$NODE_DIR/cni/ipam"
  node_cgroups_remove
  if command -v iptables >/dev/null; then  # the kubelet's canary chains
    local t c
    for t in mangle nat filter; do for c in KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
      iptables -t "$t" -X "$c" 2>/dev/null || true; done; done
  fi
  if [ -f "$NODE_DIR/host-paths" ]; then
    local p
    while read -r p; do case "$p" in /var/*|/run/*) rm -rf "$p" ;; esac; done <"$NODE_DIR/host-paths"
    rm -f "$NODE_DIR/host-paths"
  fi
}

# Every mount under the node's folder or the kubelet's (pods' secrets, local PVs, overlay rootfs,
# sandbox shm), deepest first.
node_unmount() {
  local m
  for _ in 1 2 3; do
    m=$(awk -v d="$NODE_DIR/" -v k="/var/lib/kubelet/" 'index($2, d) == 1 || index($2, k) == 1 {print $2}' /proc/mounts | sort -r)
    [ -n "$m" ] || return 0
    echo "$m" | while read -r p; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
  done
}

node_cgroups_remove() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

node_status_line() {
  pid_alive "$DATA/containerd.pid" && containerd_healthy && pid_alive "$DATA/kubelet.pid" && kubelet_healthy
}
