package shim

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/klambda/klambda/shim/internal/api"
)

// RunPipe is `runtime-shim pipe -- CMD...`, meant as the function container's command in
// sidecar mode: it runs CMD with stdout and stderr on a pipe, copies every line to its own
// stdout (the kubelet's log stays as it was) and streams it to the sidecar at runtimeAPI,
// where it enters the invocation's tail and the Logs API as in exec mode. When CMD exits,
// it tells the sidecar the exit status and exits with CMD's code. Signals are forwarded.
func RunPipe(runtimeAPI string, command []string) int {
	if len(command) == 0 {
		os.Stderr.WriteString("runtime-shim pipe: no command\n")
		return 2
	}
	r, w, err := os.Pipe()
	if err != nil {
		os.Stderr.WriteString("runtime-shim pipe: " + err.Error() + "\n")
		return 1
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = w, w, os.Stdin
	if err := cmd.Start(); err != nil {
		os.Stderr.WriteString("runtime-shim pipe: " + err.Error() + "\n")
		return 127
	}
	w.Close()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()

	lines := make(chan []byte, 1024)
	streamDone := make(chan struct{})
	go func() {
		streamLines("http://"+runtimeAPI+api.PipeLogsPath, lines)
		close(streamDone)
	}()
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			_, _ = os.Stdout.Write(line)
			cp := append([]byte(nil), line...)
			if cp[len(cp)-1] != '\n' {
				cp = append(cp, '\n')
			}
			select {
			case lines <- cp:
			default: // the sidecar is not keeping up: the kubelet's log still has the line
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
	}
	close(lines)
	err = cmd.Wait()
	select {
	case <-streamDone:
	case <-time.After(time.Second):
	}
	status := "exit status 0"
	code := 0
	if err != nil {
		status = err.Error()
		code = 1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			code = ee.ExitCode()
		}
	}
	c := &http.Client{Timeout: time.Second}
	if resp, err := c.Post("http://"+runtimeAPI+api.PipeExitPath, "text/plain", strings.NewReader(status)); err == nil {
		resp.Body.Close()
	}
	return code
}

// streamLines keeps one streaming POST open to url and writes lines into it,
// reconnecting when the sidecar is not there (a line that failed is retried once).
func streamLines(url string, lines <-chan []byte) {
	var carry []byte
	for {
		pr, pw := io.Pipe()
		reqDone := make(chan struct{})
		go func() {
			defer close(reqDone)
			resp, err := http.Post(url, "text/plain", pr)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			pr.CloseWithError(io.ErrClosedPipe)
		}()
		broken := false
		if carry != nil {
			if _, err := pw.Write(carry); err != nil {
				broken = true
			}
			carry = nil
		}
		for !broken {
			line, more := <-lines
			if !more {
				pw.Close()
				<-reqDone
				return
			}
			if _, err := pw.Write(line); err != nil {
				carry, broken = line, true
			}
		}
		<-reqDone
		time.Sleep(100 * time.Millisecond)
	}
}
