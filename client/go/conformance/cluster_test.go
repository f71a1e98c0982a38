package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vss "github.com/vss-dev/vss/client/go/vss"
	"github.com/vss-dev/vss/client/go/vsspb"
)

const (
	// binaryVar names the vss-runtime binary the suite starts.
	binaryVar = "VSS_RUNTIME_BIN"
	// optOutVar, set to 1, turns the suite off: it is then reported as
	// skipped, never as passed.
	optOutVar = "VSS_SKIP_CONFORMANCE"
)

// repoRoot is the repository's root, from client/go/conformance.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

// runtimeBinary finds vss-runtime: $VSS_RUNTIME_BIN, else one cargo built
// in the repository's target/. The suite fails, naming the variable, when
// there is none, unless VSS_SKIP_CONFORMANCE=1.
func runtimeBinary(t *testing.T) string {
	if path := os.Getenv(binaryVar); path != "" {
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			t.Fatalf("%s=%s is not a file", binaryVar, path)
		}
		return path
	}
	var tried []string
	for _, dir := range []string{"release", "debug", "x86_64-unknown-linux-musl/release"} {
		path := filepath.Join(repoRoot(), "target", dir, "vss-runtime")
		tried = append(tried, path)
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			return path
		}
	}
	if os.Getenv(optOutVar) == "1" {
		t.Skipf("SKIPPED (%s=1): the conformance suite did NOT run; nothing was tested", optOutVar)
	}
	t.Fatalf("no vss-runtime binary: set %s to one (cargo build -p vss-runtime), or %s=1 to skip the suite "+
		"(reported as skipped, not passed); looked in %s", binaryVar, optOutVar, strings.Join(tried, ", "))
	return ""
}

type node struct {
	id               string
	grpc, mesh, http string
	cmd              *exec.Cmd
	log              string
}

// cluster is vss-runtime processes on loopback, each started here and
// killed here by its PID.
type cluster struct {
	t      *testing.T
	bin    string
	config string
	peers  string
	nodes  []*node
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no free loopback port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startCluster(t *testing.T, bin, config string, n int) *cluster {
	dir := t.TempDir()
	c := &cluster{t: t, bin: bin, config: config}
	var peers []string
	for i := range n {
		nd := &node{id: fmt.Sprintf("vss-%d", i), grpc: freePort(t), mesh: freePort(t), http: freePort(t)}
		nd.log = filepath.Join(dir, nd.id+".log")
		peers = append(peers, nd.id+"="+nd.mesh)
		c.nodes = append(c.nodes, nd)
	}
	c.peers = strings.Join(peers, ",")
	t.Cleanup(c.killAll)
	for i := range c.nodes {
		c.start(i)
	}
	return c
}

// start (re)starts instance i on its ports.
func (c *cluster) start(i int) {
	nd := c.nodes[i]
	log, err := os.OpenFile(nd.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatalf("log file: %v", err)
	}
	defer log.Close()
	cmd := exec.Command(c.bin, "--config", c.config, "--id", nd.id,
		"--listen", nd.grpc, "--mesh-listen", nd.mesh, "--http-listen", nd.http, "--peers", c.peers)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "RUST_LOG=info")
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", c.bin, err)
	}
	nd.cmd = cmd
}

// kill SIGKILLs instance i (the process started here) and reaps it.
func (c *cluster) kill(i int) {
	nd := c.nodes[i]
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Kill()
	_ = nd.cmd.Wait()
	nd.cmd = nil
}

func (c *cluster) killAll() {
	for i := range c.nodes {
		c.kill(i)
	}
}

func (c *cluster) endpoints() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.grpc
	}
	return out
}

func (c *cluster) index(id string) int {
	for i, nd := range c.nodes {
		if nd.id == id {
			return i
		}
	}
	return -1
}

// logTails is the end of every instance's log, for a failure report.
func (c *cluster) logTails(lines int) string {
	var b strings.Builder
	for _, nd := range c.nodes {
		text, _ := os.ReadFile(nd.log)
		all := strings.Split(strings.TrimRight(string(text), "\n"), "\n")
		if len(all) > lines {
			all = all[len(all)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", nd.id, nd.log, strings.Join(all, "\n"))
	}
	return b.String()
}

// settled waits until every instance holds the same routing table with
// every instance as a member and a route for each of slots slots.
func (c *cluster) settled(within time.Duration, slots int) (*vsspb.RoutingTable, error) {
	client, err := vss.New(vss.WithEndpoints(c.endpoints()...), vss.WithTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	deadline := time.Now().Add(within)
	var last []vss.InstanceStatus
	for time.Now().Before(deadline) {
		last, _ = client.Status(context.Background())
		var first *vsspb.RoutingTable
		ok := len(last) == len(c.nodes)
		for _, s := range last {
			if s.Err != nil || s.Reply.GetRouting() == nil {
				ok = false
				break
			}
			table := s.Reply.GetRouting()
			if first == nil {
				first = table
			}
			if !proto.Equal(first, table) || table.GetEpoch() < 1 ||
				len(table.GetMembers()) != len(c.nodes) || len(table.GetRoutes()) != slots {
				ok = false
				break
			}
		}
		if ok {
			return first, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	var b strings.Builder
	for _, s := range last {
		fmt.Fprintf(&b, "%s: err=%v routing=%v\n", s.Endpoint, s.Err, s.Reply.GetRouting())
	}
	return nil, errors.New("routing did not settle within " + within.String() + ":\n" + b.String())
}

// metric reads one unlabelled value from instance i's /metrics.
func (c *cluster) metric(i int, name string) (float64, error) {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + c.nodes[i].http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == name {
			return strconv.ParseFloat(fields[1], 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}
