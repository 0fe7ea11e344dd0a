package controllers

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/klambda/klambda/api/contract"
)

// commonEnv is what the shim and the function share: Lambda's reserved variables and the
// pod's identity for the log stream.
func (b *podBuilder) commonEnv() envList {
	w, c := b.w, b.c
	common := envList{}
	common.set(corev1.EnvVar{Name: "KLAMBDA_POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}})
	common.lit("AWS_LAMBDA_FUNCTION_NAME", w.Function)
	common.lit("AWS_LAMBDA_FUNCTION_VERSION", w.Qualifier)
	common.lit("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", strconv.Itoa(int(b.memory)))
	common.lit("AWS_LAMBDA_FUNCTION_TIMEOUT", strconv.Itoa(int(c.EffectiveTimeout().Seconds())))
	common.lit("AWS_LAMBDA_LOG_GROUP_NAME", b.cfg.LogGroupPrefix+w.Function)
	// [version]<pod uid>: one stream per environment, as Lambda's [version]<hex>.
	common.set(corev1.EnvVar{Name: "AWS_LAMBDA_LOG_STREAM_NAME", Value: "[" + escapeEnv(w.Qualifier) + "]$(KLAMBDA_POD_UID)"})
	common.lit("AWS_REGION", b.cfg.Region)
	common.lit("AWS_DEFAULT_REGION", b.cfg.Region)
	if b.isZip {
		common.lit("_HANDLER", c.Handler)
	}
	return common
}

// shimEnv adds the shim's own variables: the account and the invoke token.
func (b *podBuilder) shimEnv(common envList) envList {
	env := append(envList{}, common...)
	env.lit("KLAMBDA_ACCOUNT_ID", b.cfg.AccountID)
	env.set(corev1.EnvVar{Name: contract.InvokeSecretEnv, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: b.w.InvokeSecret}, Key: contract.InvokeSecretKey}}})
	return env
}

// functionEnv adds the runtime's variables, then the user's (which may override the
// unreserved defaults).
func (b *podBuilder) functionEnv(common envList) envList {
	c := b.c
	env := append(envList{}, common...)
	env.lit("AWS_LAMBDA_RUNTIME_API", runtimeAPIAddr)
	env.lit("LAMBDA_TASK_ROOT", taskRoot)
	env.lit("LAMBDA_RUNTIME_DIR", runtimeDir)
	env.lit("AWS_LAMBDA_INITIALIZATION_TYPE", initOnDemand)
	env.lit("TZ", ":UTC")
	env.lit("KLAMBDA_ROLE", "function")
	if b.isZip {
		b.zipRuntimeEnv(&env)
	} else {
		env.lit("AWS_EXECUTION_ENV", "AWS_Lambda_Image")
	}
	if c.Environment != nil {
		for _, v := range c.Environment.Variables {
			if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
				env.set(corev1.EnvVar{Name: v.Name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: v.ValueFrom.SecretKeyRef.DeepCopy()}})
			} else {
				env.lit(v.Name, v.Value)
			}
		}
	}
	return env
}

// zipRuntimeEnv is a managed runtime's environment: the execution environment and the
// unreserved defaults (the user may override them; an Image keeps its own ENV).
func (b *podBuilder) zipRuntimeEnv(env *envList) {
	rt := string(b.c.Runtime)
	env.lit("AWS_EXECUTION_ENV", "AWS_Lambda_"+rt)
	env.lit("LANG", "en_US.UTF-8")
	env.lit("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin")
	env.lit("LD_LIBRARY_PATH", "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib")
	env.lit("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR")
	switch {
	case strings.HasPrefix(rt, "nodejs"):
		env.lit("NODE_PATH", "/opt/nodejs/node"+strings.TrimSuffix(strings.TrimPrefix(rt, "nodejs"), ".x")+"/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task")
	case strings.HasPrefix(rt, "python"):
		env.lit("PYTHONPATH", "/var/runtime")
	}
}

// Initialization types (AWS_LAMBDA_INITIALIZATION_TYPE).
const (
	initOnDemand    = "on-demand"
	initProvisioned = "provisioned-concurrency"
)

// setInitializationType sets AWS_LAMBDA_INITIALIZATION_TYPE in every container of d that
// has it: provisioned-concurrency for a version whose environments a provisioned-concurrency
// configuration keeps warm (started ahead of invocations), else on-demand. It is set for the
// version's pod template, so the environments the activator starts beyond the provisioned
// ones (spillover) say provisioned-concurrency too.
func setInitializationType(d *appsv1.Deployment, provisioned bool) {
	value := initOnDemand
	if provisioned {
		value = initProvisioned
	}
	spec := &d.Spec.Template.Spec
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			for j := range cs[i].Env {
				if cs[i].Env[j].Name == "AWS_LAMBDA_INITIALIZATION_TYPE" {
					cs[i].Env[j].Value = value
				}
			}
		}
	}
}
