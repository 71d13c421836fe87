// Command kube is a multi-call binary holding the Kubernetes control plane and etcd.
//
// It picks the component from the name it was invoked as (a hard link named
// kube-apiserver, kube-controller-manager, kube-scheduler or etcd), or from its
// first argument. One component per process: the apiserver's signal handler
// set-up panics if two components share a process.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	// Registers the client metrics and version-flag plumbing the real mains import.
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
)

var components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if !isComponent(name) && len(os.Args) > 1 && isComponent(os.Args[1]) {
		name, args = os.Args[1], os.Args[1:]
	}
	switch name {
	case "kube-apiserver":
		os.Args = args
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Args = args
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Args = args
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "etcd":
		etcdmain.Main(args)
	default:
		fmt.Fprintf(os.Stderr, "usage: kube {%s} [flags]\n", strings.Join(components, "|"))
		os.Exit(2)
	}
}

func isComponent(name string) bool {
	for _, c := range components {
		if c == name {
			return true
		}
	}
	return false
}
