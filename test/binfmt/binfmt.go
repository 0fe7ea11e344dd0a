// Package binfmt tells the image tests whether this machine can start a linux/arm64
// binary: through qemu-user, registered with the kernel's binfmt_misc.
package binfmt

import (
	"fmt"
	"os"
	"strings"
)

// qemuAArch64 is binfmt_misc's entry for qemu-aarch64 (update-binfmts names it so).
const qemuAArch64 = "/proc/sys/fs/binfmt_misc/qemu-aarch64"

// ARM64 returns nil when binfmt_misc has an enabled qemu-aarch64 entry, else why not and
// how to enable it.
func ARM64() error { return enabled(qemuAArch64) }

func enabled(entry string) error {
	b, err := os.ReadFile(entry)
	if err == nil && strings.HasPrefix(string(b), "enabled") {
		return nil
	}
	return fmt.Errorf("binfmt has no enabled qemu-aarch64 (apt-get install qemu-user-static binfmt-support; mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)")
}
