"""One definition of a real node, whatever runs it: its configuration files, labels, taint, images and the
wait for it to be Ready.

The local backend's real nodes (:mod:`kdlib.cluster.local.realnodes`), the SSH kubelet workers
(:mod:`kdlib.cluster.ssh.kubelets`) and kubeadm mode (:mod:`kdlib.cluster.ssh.kubeadm_cluster`) all
build their nodes from here; :mod:`kdlib.k8s.objects` pins real pods to them with the same label,
toleration and image. Nothing here starts a process or opens a connection: the backends do.
"""
