package localkubelet

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// registerNode creates (or relabels) the Node this harness stands for and marks it Ready, as a
// kubelet registers itself.
func (k *Kubelet) registerNode(ctx context.Context, opts NodeOptions) error {
	if opts.Name == "" {
		opts.Name = "localkubelet"
	}
	node := &corev1.Node{}
	err := k.client.Get(ctx, client.ObjectKey{Name: opts.Name}, node)
	switch {
	case apierrors.IsNotFound(err):
		node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: opts.Name, Labels: maps.Clone(opts.Labels)}}
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		node.Labels["kubernetes.io/hostname"] = opts.Name
		if err := k.client.Create(ctx, node); err != nil {
			return fmt.Errorf("localkubelet: register node: %w", err)
		}
	case err != nil:
		return fmt.Errorf("localkubelet: get node: %w", err)
	default:
		before := node.DeepCopy()
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		maps.Copy(node.Labels, opts.Labels)
		if err := k.client.Patch(ctx, node, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("localkubelet: label node: %w", err)
		}
	}
	before := node.DeepCopy()
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "edgepool local kubelet: replicas run as local processes",
		LastHeartbeatTime: now, LastTransitionTime: now}}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if err := k.client.Status().Patch(ctx, node, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("localkubelet: node status: %w", err)
	}
	k.log.Info("node registered", "node", opts.Name, "labels", node.Labels)
	return nil
}
