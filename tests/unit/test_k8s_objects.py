from kdlib.k8s import objects


def test_simulated_kd_deployment_labels():
    deployment = objects.deployment("fn-0000", "ns", replicas=0, simulated_sandbox=True, kd=True)
    assert deployment["metadata"]["labels"]["kubedirect/managed"] == "true"
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["kubedirect/pod-lifecycle"] == "custom"
    assert template["spec"]["tolerations"] == [
        {"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}]
    assert template["spec"]["nodeSelector"] == {"type": "kwok"}
    assert deployment["spec"]["replicas"] == 0


def test_vanilla_real_deployment_has_neither_label_nor_kwok_pinning():
    deployment = objects.deployment("fn-0000", "ns", simulated_sandbox=False, kd=False, on_kwok=False)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "kubedirect/managed" not in labels and "kubedirect/pod-lifecycle" not in labels
    assert "nodeSelector" not in deployment["spec"]["template"]["spec"]
