package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	txswitch "github.com/txswitch/txswitch/switch"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// testBinary builds cmd/txswitch once per test binary (TXSWITCH_BIN
// overrides it).
func testBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TXSWITCH_BIN"); p != "" {
		return p
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "txswitch-chaos-bin-"); binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		binPath, binErr = BuildBinary(ctx, binDir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func startProcs(t *testing.T, nodes int) *ProcCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := StartProcs(ctx, ProcConfig{Binary: testBinary(t), Nodes: nodes, Dir: t.TempDir(), TickInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitLeaderNot waits for a leader other than not (nil: any).
func waitLeaderNot(t *testing.T, c *ProcCluster, not *Proc) *Proc {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if l := c.Leader(); l != nil && l != not {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader other than %v within 15s", not)
	return nil
}

// createOrder writes an order through addr (retrying 503s, and the 409
// idempotency_request_in_progress an earlier attempt still in flight
// causes, with the same idempotency key) and returns its id once
// acknowledged.
func createOrder(t *testing.T, c *ProcCluster, addr, key string) string {
	t.Helper()
	body, _ := json.Marshal(txswitch.CreateOrderRequest{Reference: key, Amount: txswitch.Money{Value: 1234, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", ID: "cust-1"}, Channel: "online"})
	for attempt := 0; attempt < 50; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/orders", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
		req.Header.Set("Idempotency-Key", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
				var o txswitch.Order
				if err := json.Unmarshal(b, &o); err != nil {
					t.Fatal(err)
				}
				return o.ID
			}
			var e struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal(b, &e)
			inProgress := resp.StatusCode == http.StatusConflict && e.Error.Code == "idempotency_request_in_progress"
			if resp.StatusCode != http.StatusServiceUnavailable && !inProgress {
				t.Fatalf("create order: %d %s", resp.StatusCode, b)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("create order: no acknowledgement")
	return ""
}

func readOrder(c *ProcCluster, addr, id string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/orders/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestProcessKill9Leader: kill -9 of the leader process elects another,
// and a write acknowledged before the kill is readable on every node
// after the dead one was restarted on its data dir.
func TestProcessKill9Leader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts node processes")
	}
	c := startProcs(t, 3)
	ctx := context.Background()
	first := waitLeaderNot(t, c, nil)
	id := createOrder(t, c, first.APIAddr, "before-kill")

	kill := ProcKill9(c, "leader")
	if err := kill.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if first.Running() {
		t.Fatal("the killed leader's process is still running")
	}
	second := waitLeaderNot(t, c, first)
	after := createOrder(t, c, second.APIAddr, "after-kill")
	if err := kill.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if _, hit, why := Summary(kill.Fired()); !hit {
		t.Fatalf("kill -9 not recorded as fired: %s", why)
	}
	if err := c.waitCaughtUp(ctx, first, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Running() {
		for _, oid := range []string{id, after} {
			code, err := readOrder(c, p.APIAddr, oid)
			if err != nil || code != http.StatusOK {
				t.Fatalf("order %s on n%d: %d %v, want 200", oid, p.Slot+1, code, err)
			}
		}
	}
	if cr := c.Crashes(); len(cr) != 0 {
		t.Fatalf("a kill -9 the runner sent counted as a crash: %v", cr)
	}
	// A process that dies without the runner asking is a crash.
	if err := syscall.Kill(second.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := second.wait(procReapTimeout); err != nil {
		t.Fatal(err)
	}
	if cr := c.Crashes(); len(cr) != 1 {
		t.Fatalf("crashes %v, want the one process killed behind the runner's back", cr)
	}
}

// TestProcessPausedLeaderStepsDown: a leader stopped with SIGSTOP past an
// election is replaced; after SIGCONT it is a follower at a higher term
// and a write through it is committed by the new leader.
func TestProcessPausedLeaderStepsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts node processes")
	}
	c := startProcs(t, 3)
	ctx := context.Background()
	first := waitLeaderNot(t, c, nil)
	st, _ := first.Status()
	pause := ProcPause(c, "leader")
	if err := pause.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	second := waitLeaderNot(t, c, first)
	if err := pause.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := c.ReadStatus(ctx, first.APIAddr)
		if err == nil && now.Raft.State != "StateLeader" && now.Raft.Term > st.Raft.Term {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed old leader did not step down: %+v %v (was leader at term %d)", now.Raft, err, st.Raft.Term)
		}
		time.Sleep(50 * time.Millisecond)
	}
	id := createOrder(t, c, first.APIAddr, "via-old-leader")
	if code, err := readOrder(c, second.APIAddr, id); err != nil || code != http.StatusOK {
		t.Fatalf("order written through the old leader, read on the new: %d %v", code, err)
	}
}

// TestProcessNetCutAndWipeRejoin: a cut leader loses its leadership; a
// wiped follower rejoins under a new member id and the cluster settles at
// three members.
func TestProcessNetCutAndWipeRejoin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts node processes")
	}
	c := startProcs(t, 3)
	ctx := context.Background()
	first := waitLeaderNot(t, c, nil)
	cut := NetCut(c, "leader")
	if err := cut.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	waitLeaderNot(t, c, first)
	if err := cut.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if _, hit, why := Summary(cut.Fired()); !hit {
		t.Fatalf("cut not recorded as fired: %s", why)
	}

	w := ProcWipe(c, "follower")
	if err := w.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if w.joined == nil || w.joined.ID() == w.oldID {
		t.Fatalf("rejoined as %v, old id %d: want a new member id", w.joined, w.oldID)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		lead := c.Leader()
		if lead != nil {
			if st, fresh := lead.Status(); fresh && len(st.Raft.Members) == 3 && len(c.Running()) == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprint("membership did not settle at 3 members with 3 processes; running: ", len(c.Running())))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcessFollowerStopsWaitingForFrozenLeader: a write a follower
// forwards to a leader that is then frozen (SIGSTOP) is answered
// outcome_unknown with the new leader's address once the others elect one,
// while the old leader is still frozen (not when the 12 s forward timeout
// ends); the caller's retry under the same key, sent there, creates the
// order, and after the old leader resumes the key still names that one
// order on every node.
func TestProcessFollowerStopsWaitingForFrozenLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts node processes")
	}
	c := startProcs(t, 3)
	ctx := context.Background()
	first := waitLeaderNot(t, c, nil)
	var follower *Proc
	for _, p := range c.Running() {
		if p != first {
			follower = p
			break
		}
	}
	pause := ProcPause(c, "leader")
	if err := pause.Inject(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pause.Undo(ctx) }()

	// The follower still takes the frozen node for the leader (an election
	// needs its timeout to pass) and forwards the write there.
	body, _ := json.Marshal(txswitch.CreateOrderRequest{Reference: "frozen", Amount: txswitch.Money{Value: 1234, Currency: "EUR"},
		Customer: txswitch.Customer{Country: "NL", ID: "cust-1"}, Channel: "online"})
	post := func(addr string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/orders", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
		req.Header.Set("Idempotency-Key", "frozen-leader")
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("post to %s: %v", addr, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	code, hdr, b := post(follower.APIAddr)
	if !first.Paused() {
		t.Fatal("the old leader was resumed before the follower answered")
	}
	if code != http.StatusServiceUnavailable || !bytes.Contains(b, []byte(`"outcome_unknown"`)) {
		t.Fatalf("follower answered %d %s, want 503 outcome_unknown", code, b)
	}
	second := waitLeaderNot(t, c, first)
	if got := hdr.Get("X-Txswitch-Leader"); got != second.APIAddr {
		t.Errorf("leader hint %q, want the new leader %s", got, second.APIAddr)
	}
	if n := forwardedMetric(t, follower.APIAddr, "leader_changed"); n != 1 {
		t.Fatalf("txswitch_http_forwarded_total{result=\"leader_changed\"} = %v, want 1", n)
	}

	code, _, b = post(second.APIAddr)
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("retry at the new leader: %d %s", code, b)
	}
	var o txswitch.Order
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	if err := pause.Undo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.waitCaughtUp(ctx, first, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Running() {
		code, _, b := post(p.APIAddr)
		var again txswitch.Order
		// The stored response is replayed: its 201 and the same order.
		if code != http.StatusCreated || json.Unmarshal(b, &again) != nil || again.ID != o.ID {
			t.Fatalf("the key through n%d: %d %s, want the stored 201 with order %s", p.Slot+1, code, b, o.ID)
		}
	}
}

// forwardedMetric reads txswitch_http_forwarded_total{result=...} from a
// node's /metrics.
func forwardedMetric(t *testing.T, addr, result string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prefix := fmt.Sprintf(`txswitch_http_forwarded_total{result=%q} `, result)
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(prefix)); ok {
			var f float64
			if _, err := fmt.Sscan(string(v), &f); err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}
