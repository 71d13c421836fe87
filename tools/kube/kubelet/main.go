// Command kubelet is the upstream kubelet's main, built with the control plane's pins.
//
// It is its own binary (not part of the multi-call kube binary) so that clusters with
// only kwok nodes never need it, and so that its build does not change the kube binary.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/restclient"
	_ "k8s.io/component-base/metrics/prometheus/version"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand()))
}
