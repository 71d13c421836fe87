// Command kubeadm is the upstream kubeadm, built with the control plane's pins.
//
// Its own binary, like the kubelet: only the SSH backend's kubeadm mode (and its tests)
// need it, and building it never changes the kube binary.
package main

import (
	"k8s.io/kubernetes/cmd/kubeadm/app"
	kubeadmutil "k8s.io/kubernetes/cmd/kubeadm/app/util"
)

func main() {
	// app.Run parses the command line; CheckErr prints an error and exits non-zero.
	kubeadmutil.CheckErr(app.Run())
}
