package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/internal/codeloader"
)

// baseVolumes are the function's /tmp (Lambda's ephemeral storage, 512 MB by default), the
// sidecar shim's own /tmp, and the file systems the function mounts.
func (b *podBuilder) baseVolumes() []corev1.Volume {
	tmpMB := int32(512)
	if es := b.c.EphemeralStorage; es != nil && es.Size > 0 {
		tmpMB = es.Size
	}
	volumes := []corev1.Volume{
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(int64(tmpMB)<<20, resource.BinarySI)}}},
	}
	if !b.embedded {
		volumes = append(volumes, corev1.Volume{Name: "shim-tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: resource.NewQuantity(64<<20, resource.BinarySI)}}})
	}
	for _, fs := range b.c.FileSystemConfigs {
		volumes = append(volumes, corev1.Volume{Name: "fs-0", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fs.ClaimName}}})
	}
	return volumes
}

// baseMounts are the function container's mounts of baseVolumes.
func (b *podBuilder) baseMounts() []corev1.VolumeMount {
	mounts := []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	for _, fs := range b.c.FileSystemConfigs {
		mounts = append(mounts, corev1.VolumeMount{Name: "fs-0", MountPath: fs.LocalMountPath})
	}
	return mounts
}

// codeSetup is how zip code and layers reach the function: the volumes they are unpacked
// into and read from, the function's mounts of them, and who loads them (the load-code
// init container, or the embedded shim with shimLoadArgs).
type codeSetup struct {
	volumes      []corev1.Volume
	fnMounts     []corev1.VolumeMount
	loader       *corev1.Container
	shimLoadArgs []string
}

// codeVolumes is the codeSetup of a zip function (nothing for an image).
func (b *podBuilder) codeVolumes() codeSetup {
	var s codeSetup
	if !b.isZip {
		return s
	}
	s.volumes = codeDirVolumes()
	var args []string
	var loaderMounts []corev1.VolumeMount
	var credEnv []corev1.EnvVar
	add := func(flag string, src lambdav1alpha1.CodeSource, d Digest, cp, storeRef, slot string) {
		src2, vols, mounts, env := loaderSource(b.cfg, src, d, cp, storeRef, slot)
		args = append(args, flag+"="+src2.String())
		s.volumes = append(s.volumes, vols...)
		loaderMounts = append(loaderMounts, mounts...)
		credEnv = append(credEnv, env...)
	}
	add("--code", b.c.Code.CodeSource, b.w.CodeDigest, b.w.CodeCopy, b.w.CodeStoreRef, "code")
	for i, l := range b.w.Layers {
		add("--layer", l.Content, l.Digest, l.Copy, l.StoreRef, fmt.Sprintf("layer-%d", i+1))
	}
	if b.shimLoads {
		// The shim unpacks through its own writable mounts; the function sees the same
		// folders read-only at /var/task and /opt, as in Lambda. Downloads wait in the
		// function's /tmp, and are gone before the runtime starts.
		s.shimLoadArgs = append([]string{"--task-root=" + shimTaskRoot, "--opt=" + shimOptRoot, "--scratch=/tmp"}, args...)
		s.fnMounts = append(s.fnMounts, loaderMounts...)
		s.fnMounts = append(s.fnMounts, corev1.VolumeMount{Name: "task", MountPath: shimTaskRoot}, corev1.VolumeMount{Name: "opt", MountPath: shimOptRoot})
	} else {
		// Downloads wait in scratch while they are checked (an archive is at most 250 MB).
		s.volumes = append(s.volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: resource.NewQuantity(codeloader.MaxArchiveSize+(16<<20), resource.BinarySI)}}})
		loaderMounts = append(loaderMounts, corev1.VolumeMount{Name: "task", MountPath: taskRoot}, corev1.VolumeMount{Name: "opt", MountPath: optRoot}, corev1.VolumeMount{Name: "scratch", MountPath: "/tmp"})
		loader := b.loadCodeContainer(args, credEnv, loaderMounts)
		s.loader = &loader
	}
	s.fnMounts = append(s.fnMounts, corev1.VolumeMount{Name: "task", MountPath: taskRoot, ReadOnly: true}, corev1.VolumeMount{Name: "opt", MountPath: optRoot, ReadOnly: true})
	return s
}
