package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// suite is client/conformance/scenarios.json.
type suite struct {
	Format    int        `json:"format"`
	Config    string     `json:"config"`
	Instances int        `json:"instances"`
	Scenarios []scenario `json:"scenarios"`
}

type scenario struct {
	Name   string         `json:"name"`
	Doc    string         `json:"doc"`
	Kind   string         `json:"kind"`
	Steps  []step         `json:"steps"`
	Params map[string]any `json:"params"`
	Expect map[string]any `json:"expect"`
}

type step struct {
	Call        string         `json:"call"`
	Args        map[string]any `json:"args"`
	Repeat      int            `json:"repeat"`
	Concurrent  bool           `json:"concurrent"`
	Via         string         `json:"via"`
	Expect      map[string]any `json:"expect"`
	ExpectError *struct {
		Code            string `json:"code"`
		MessageContains string `json:"message_contains"`
	} `json:"expect_error"`
	WaitReset *struct {
		PlusMs float64 `json:"plus_ms"`
	} `json:"wait_reset"`
	SleepMs float64 `json:"sleep_ms"`
}

// loadSuite reads the suite with {run} replaced by runID.
func loadSuite(t *testing.T, runID string) (suite, string) {
	dir := filepath.Join(repoRoot(), "client", "conformance")
	raw, err := os.ReadFile(filepath.Join(dir, "scenarios.json"))
	if err != nil {
		t.Fatalf("reading the suite: %v", err)
	}
	text := strings.ReplaceAll(string(raw), "{run}", runID)
	var s suite
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		t.Fatalf("client/conformance/scenarios.json: %v", err)
	}
	if s.Format != 1 {
		t.Fatalf("scenarios.json format %d: this runner reads format 1", s.Format)
	}
	return s, filepath.Join(dir, s.Config)
}

// TestConformance runs every scenario of the suite, in order, on one
// cluster of real vss-runtime processes.
func TestConformance(t *testing.T) {
	bin := runtimeBinary(t)
	runID := fmt.Sprintf("go-%d-%d", os.Getpid(), time.Now().Unix())
	s, config := loadSuite(t, runID)
	configured, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	slots := strings.Count(string(configured), "- id:")
	started := time.Now()
	c := startCluster(t, bin, config, s.Instances)
	if _, err := c.settled(30*time.Second, slots); err != nil {
		t.Fatalf("%v\n%s", err, c.logTails(20))
	}
	t.Logf("cluster of %d (%s) settled in %.1fs", s.Instances, bin, time.Since(started).Seconds())
	r := &runner{c: c, runID: runID, slots: slots}
	defer r.close()
	passed, failed := 0, 0
	for _, sc := range s.Scenarios {
		ok := t.Run(sc.Name, func(t *testing.T) {
			began := time.Now()
			if err := r.run(t, sc); err != nil {
				t.Fatalf("%s: %v", sc.Name, err)
			}
			t.Logf("ok (%.1fs)", time.Since(began).Seconds())
		})
		if ok {
			passed++
		} else {
			failed++
		}
	}
	if failed > 0 {
		t.Logf("instance logs:\n%s", c.logTails(15))
	}
	fmt.Printf("conformance (go client): %d passed, %d failed (%.1fs)\n", passed, failed, time.Since(started).Seconds())
}
