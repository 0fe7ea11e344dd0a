package codeloader

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klambda/klambda/internal/netguard"
)

// Main is the `runtime-shim load-code` subcommand:
//
//	load-code [--task-root=/var/task] [--opt=/opt] [--scratch=/tmp] [--code=SOURCE] [--layer=SOURCE]...
//
// It unpacks --code into the task root and each --layer, in the order given, into /opt
// (the last layer wins for a file in several). Every SOURCE (see Source) must pin its
// SHA-256. An unsafe archive (zip-slip, a symlink out of its folder) or a digest mismatch
// fails with a message that says which.
func Main(ctx context.Context, args []string) error {
	return run(ctx, args, os.Stderr)
}

type sourceList []string

func (s *sourceList) String() string     { return strings.Join(*s, ",") }
func (s *sourceList) Set(v string) error { *s = append(*s, v); return nil }

func run(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("load-code", flag.ContinueOnError)
	fs.SetOutput(log)
	var o Options
	var layers sourceList
	fs.StringVar(&o.TaskRoot, "task-root", "/var/task", "folder the code is unpacked into")
	fs.StringVar(&o.Opt, "opt", "/opt", "folder the layers are unpacked into")
	fs.StringVar(&o.Scratch, "scratch", "", "folder for downloads (default: the system's temporary folder)")
	fs.StringVar(&o.Code, "code", "", "source of the code archive")
	fs.Var(&layers, "layer", "source of a layer archive; repeat, in order")
	fs.BoolVar(&o.AllowUnpinned, "allow-unpinned", false, "accept sources without #sha256=")
	fs.BoolVar(&o.AllowLoopback, "allow-loopback", false, "let downloads dial loopback addresses (tests and local development only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("load-code: unexpected arguments %q", fs.Args())
	}
	o.Layers = layers
	return Load(ctx, o, log)
}

// Options of Load: what to unpack where.
type Options struct {
	// TaskRoot receives the code, Opt the layers (defaults /var/task and /opt).
	TaskRoot, Opt string
	// Scratch holds downloads while they are checked (default: the system's temporary folder).
	Scratch string
	// Code and Layers are sources in the URL form of Source; Layers in order.
	Code   string
	Layers []string
	// AllowUnpinned accepts sources without #sha256=.
	AllowUnpinned bool
	// AllowLoopback lets downloads dial loopback addresses, which Limits' policy otherwise
	// refuses with link-local and the like (tests and local development only).
	AllowLoopback bool
	// Budget is what the code and the layers may unpack to in all (nil: FullBudget,
	// Lambda's 250 MB and MaxEntries).
	Budget *Budget
}

// Load unpacks the code into the task root and each layer, in order, into /opt, and logs
// a line per archive to log. It is load-code's work; runtime-shim exec calls it before it
// starts the runtime when the pod has no init container for it.
func Load(ctx context.Context, o Options, log io.Writer) error {
	if o.TaskRoot == "" {
		o.TaskRoot = "/var/task"
	}
	if o.Opt == "" {
		o.Opt = "/opt"
	}
	budget := o.Budget // the code and its layers together
	if budget == nil {
		budget = FullBudget()
	}
	load := func(what, spec, dest string) error {
		src, err := ParseSource(spec)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if src.SHA256 == "" && !o.AllowUnpinned {
			return fmt.Errorf("%s: source %s does not pin its sha256", what, src.redacted())
		}
		lim := Limits{}
		if o.AllowLoopback {
			lim.Policy = &netguard.Policy{AllowLoopback: true}
		}
		file, d, err := FetchLimited(ctx, src, nil, o.Scratch, lim)
		if err != nil {
			// This log is the function's own (its pod fetched from its own network
			// position): what happened is said in full.
			var fe *FetchError
			if errors.As(err, &fe) && fe.Err != nil {
				return fmt.Errorf("%s: %w (%w)", what, err, fe.Err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		defer os.Remove(file)
		info, err := ExtractWithin(file, dest, dest, budget)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(log, "load-code: %s: unpacked %d entries (%d bytes, sha256 %s) into %s\n", what, info.Entries, info.UnpackedSize, d.Hex, dest)
		return nil
	}
	if o.Code != "" {
		if err := load("code", o.Code, o.TaskRoot); err != nil {
			return err
		}
	}
	for i, l := range o.Layers {
		if err := load(fmt.Sprintf("layer %d", i+1), l, o.Opt); err != nil {
			return err
		}
	}
	return nil
}
