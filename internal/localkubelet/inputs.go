package localkubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// syncVolumes writes the pod's Secret, ConfigMap and emptyDir volumes, rewriting JSON files
// (paths, listen addresses) for the local process. Unchanged volumes are not touched; a changed
// one is swapped atomically. It fails while a required Secret or ConfigMap is missing, as the
// kubelet keeps such a pod in ContainerCreating.
func (k *Kubelet) syncVolumes(ctx context.Context, p *pod) error {
	mounted := map[string]bool{}
	for _, vm := range p.container.VolumeMounts {
		mounted[vm.Name] = true
	}
	for _, vol := range p.spec.Volumes {
		if !mounted[vol.Name] {
			continue
		}
		dir := filepath.Join(p.dir, "volumes", vol.Name)
		var files map[string][]byte
		mode := os.FileMode(0o644)
		switch {
		case vol.Secret != nil:
			src := vol.Secret
			if src.DefaultMode != nil {
				mode = os.FileMode(*src.DefaultMode)
			}
			var s corev1.Secret
			err := k.cache.Get(ctx, types.NamespacedName{Namespace: p.namespace, Name: src.SecretName}, &s)
			switch {
			case apierrors.IsNotFound(err) && src.Optional != nil && *src.Optional:
				files = map[string][]byte{}
			case err != nil:
				return fmt.Errorf("volume %s: secret %s: %w", vol.Name, src.SecretName, err)
			default:
				if files, err = projectItems(s.Data, src.Items, src.Optional); err != nil {
					return fmt.Errorf("volume %s: secret %s: %w", vol.Name, src.SecretName, err)
				}
			}
		case vol.ConfigMap != nil:
			src := vol.ConfigMap
			if src.DefaultMode != nil {
				mode = os.FileMode(*src.DefaultMode)
			}
			var cm corev1.ConfigMap
			err := k.cache.Get(ctx, types.NamespacedName{Namespace: p.namespace, Name: src.Name}, &cm)
			switch {
			case apierrors.IsNotFound(err) && src.Optional != nil && *src.Optional:
				files = map[string][]byte{}
			case err != nil:
				return fmt.Errorf("volume %s: configmap %s: %w", vol.Name, src.Name, err)
			default:
				data := map[string][]byte{}
				for key, v := range cm.Data {
					data[key] = []byte(v)
				}
				for key, v := range cm.BinaryData {
					data[key] = v
				}
				if files, err = projectItems(data, src.Items, src.Optional); err != nil {
					return fmt.Errorf("volume %s: configmap %s: %w", vol.Name, src.Name, err)
				}
			}
		case vol.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			continue
		default:
			if _, ok := p.volumes[vol.Name]; !ok {
				p.log.Warn("volume type not supported by the local kubelet; mounting an empty directory", "volume", vol.Name)
				p.volumes[vol.Name] = &volumeDir{dir: dir}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			continue
		}
		var changes []rewrite
		for key, data := range files {
			out, ch := p.rw.file(vol.Name, key, data)
			files[key] = out
			changes = append(changes, ch...)
		}
		v := p.volumes[vol.Name]
		if v == nil {
			v = &volumeDir{dir: dir}
			p.volumes[vol.Name] = v
		}
		first := v.current == nil
		changed, err := v.write(files, mode)
		if err != nil {
			return fmt.Errorf("volume %s: %w", vol.Name, err)
		}
		if changed {
			if !first {
				p.log.Info("volume updated (..data swapped)", "volume", vol.Name, "dir", dir)
			}
			for _, ch := range changes {
				p.log.Info("rewrite", "where", ch.Where, "from", ch.From, "to", ch.To)
			}
		}
	}
	return nil
}

// projectItems selects the keys of a Secret/ConfigMap volume: all keys, or the listed items
// under their paths.
func projectItems(data map[string][]byte, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	files := map[string][]byte{}
	if len(items) == 0 {
		for key, v := range data {
			files[key] = v
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return nil, fmt.Errorf("key %q missing", it.Key)
		}
		files[it.Path] = v
	}
	return files, nil
}

// containerEnv resolves the container's environment as the kubelet would, on top of a minimal
// base (PATH, HOME, HOSTNAME): the process does not inherit the harness's environment. Literal
// values have their paths and ports rewritten (logged); values from Secrets are passed as they
// are and never logged.
func (k *Kubelet) containerEnv(p *pod) ([]string, error) {
	ctx := context.Background()
	vars := map[string]string{
		"PATH":     os.Getenv("PATH"),
		"HOME":     p.dir,
		"HOSTNAME": p.name,
	}
	order := []string{"PATH", "HOME", "HOSTNAME"}
	set := func(name, value string) {
		if _, ok := vars[name]; !ok {
			order = append(order, name)
		}
		vars[name] = value
	}
	getSecret := func(name string) (*corev1.Secret, error) {
		var s corev1.Secret
		err := k.cache.Get(ctx, types.NamespacedName{Namespace: p.namespace, Name: name}, &s)
		return &s, err
	}
	getConfigMap := func(name string) (*corev1.ConfigMap, error) {
		var cm corev1.ConfigMap
		err := k.cache.Get(ctx, types.NamespacedName{Namespace: p.namespace, Name: name}, &cm)
		return &cm, err
	}
	optional := func(b *bool) bool { return b != nil && *b }

	for _, from := range p.container.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, err := getSecret(from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(from.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
			}
			for key, v := range s.Data {
				set(from.Prefix+key, string(v))
			}
		case from.ConfigMapRef != nil:
			cm, err := getConfigMap(from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("envFrom configmap %s: %w", from.ConfigMapRef.Name, err)
			}
			for key, v := range cm.Data {
				set(from.Prefix+key, v)
			}
		}
	}
	for _, e := range p.container.Env {
		switch {
		case e.ValueFrom == nil:
			v := p.rw.value(e.Value)
			if v != e.Value {
				p.log.Info("rewrite", "where", "env "+e.Name, "from", e.Value, "to", v)
			}
			set(e.Name, v)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, err := getSecret(ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: secret %s: %w", e.Name, ref.Name, err)
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if optional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: secret %s has no key %q", e.Name, ref.Name, ref.Key)
			}
			set(e.Name, string(v))
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, err := getConfigMap(ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("env %s: configmap %s: %w", e.Name, ref.Name, err)
			}
			v, ok := cm.Data[ref.Key]
			if !ok && !optional(ref.Optional) {
				return nil, fmt.Errorf("env %s: configmap %s has no key %q", e.Name, ref.Name, ref.Key)
			}
			set(e.Name, v)
		case e.ValueFrom.FieldRef != nil:
			v := p.fieldValue(e.ValueFrom.FieldRef.FieldPath)
			p.log.Info("env from field", "env", e.Name, "field", e.ValueFrom.FieldRef.FieldPath, "value", v)
			set(e.Name, v)
		default:
			p.log.Warn("env source not supported by the local kubelet; left empty", "env", e.Name)
			set(e.Name, "")
		}
	}
	env := make([]string, 0, len(order))
	for _, name := range order {
		env = append(env, name+"="+vars[name])
	}
	return env, nil
}

// fieldValue answers the downward API for the local replica.
func (p *pod) fieldValue(path string) string {
	switch path {
	case "metadata.name":
		return p.name
	case "metadata.namespace":
		return p.namespace
	case "spec.nodeName":
		return p.node
	case "status.podIP", "status.hostIP":
		return "127.0.0.1"
	case "spec.serviceAccountName":
		return p.spec.ServiceAccountName
	}
	if strings.HasPrefix(path, "metadata.labels['") && strings.HasSuffix(path, "']") {
		return p.labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")]
	}
	return ""
}
