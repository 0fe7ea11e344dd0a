package contract

import "testing"

func TestExpandEnv(t *testing.T) {
	vars := map[string]string{"KLAMBDA_POD_UID": "1234", "A": "x"}
	get := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"[$$LATEST]$(KLAMBDA_POD_UID)": "[$LATEST]1234",
		"$(A)$(B)":                     "x$(B)",
		"a$b$":                         "a$b$",
		"$$(A)":                        "$(A)",
		"$(A":                          "$(A",
		"":                             "",
	} {
		if got := ExpandEnv(in, get); got != want {
			t.Errorf("ExpandEnv(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPoolKey(t *testing.T) {
	k := PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 128}
	if k.String() != "provided.al2023/x86_64/128" || len(k.LabelValue()) != 16 || k.PoolWorkloadName() != "klambda-pool-"+k.LabelValue() {
		t.Fatal(k.String(), k.LabelValue())
	}
	if (PoolKey{Runtime: "provided.al2023", Architecture: "x86_64", MemoryMB: 256}).LabelValue() == k.LabelValue() {
		t.Fatal("two keys share a label value")
	}
}
