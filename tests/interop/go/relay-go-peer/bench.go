package main

// bench.go is `-bench`: pion relay peer to pion relay peer, both ends in this
// process on 127.0.0.1, with the same relay code the interop peer uses
// (relay.go, i.e. ion-sfu's behaviour). It prints one JSON object on stdout;
// progress goes to stderr.
//
// `relay bench` (relay-cli) runs it as a child process and prints these
// numbers beside ours from the same run, so every measurement here mirrors
// the method of relay-cli/src/bench/{pairs,rtp}.rs: the same clock start and
// stop points, the same warm-ups, the same percentile rule, the same RTP
// pacing, counting and search. Where pion forces a difference it is said in a
// comment.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// pionVersion is the pion/webrtc this binary is built against: build.sh
// compiles against Debian's golang-github-pion-webrtc.v3-dev, 3.1.56, and
// GOPATH mode carries no module version to read at run time.
const pionVersion = "3.1.56"

const (
	benchPayload     = 1200 // RTP payload bytes, as ours
	benchRequestSize = 100  // request payload bytes, as ours
	benchInFlight    = 64   // concurrent requesters for the rate
	benchMaxLoss     = 0.001
	// Below this rate the RTP search gives up: a relay that cannot carry
	// 100 packets/s has no throughput worth reporting.
	benchFloorRate = 100.0
	// Above this the search stops climbing. Loopback cannot get near it;
	// it only keeps a runaway search from allocating huge counters.
	benchCeilingRate = 2e6
	benchStartRate   = 5000.0
	// How long a connect may take before the pair counts as failed.
	benchConnectTimeout = 15 * time.Second
	// Per-request timeout: generous, a timeout means something broke.
	benchRequestTimeout = 5 * time.Second
)

var benchParts = []string{"memory", "ready", "requests", "rtp"}

// benchFlags are registered by main before flag.Parse.
type benchFlags struct {
	enabled  *bool
	quick    *bool
	window   *float64
	connects *int
	requests *int
	pairs    *int
	only     *string
}

func registerBenchFlags() *benchFlags {
	return &benchFlags{
		enabled:  flag.Bool("bench", false, "benchmark pion relay peer to pion relay peer in this process; prints one JSON object"),
		quick:    flag.Bool("bench-quick", false, "with -bench: small sizes (connects 3, requests 200, pairs 5, window 0.5 s, probe 0.3 s)"),
		window:   flag.Float64("bench-window", 10, "with -bench: RTP confirmation window in seconds (0.5 with -bench-quick)"),
		connects: flag.Int("bench-connects", 25, "with -bench: connects measured for the time to Ready (3 with -bench-quick)"),
		requests: flag.Int("bench-requests", 5000, "with -bench: sequential requests measured; the rate uses ten times as many (200 with -bench-quick)"),
		pairs:    flag.Int("bench-pairs", 100, "with -bench: idle pairs for the memory measurement (5 with -bench-quick)"),
		only:     flag.String("bench-only", "", "with -bench: comma-separated subset of memory,ready,requests,rtp (default all)"),
	}
}

// benchPlan holds the sizes of one run, as relay-cli's Plan does.
type benchPlan struct {
	quick      bool
	window     time.Duration // RTP confirmation
	probe      time.Duration // RTP search trials
	idle       time.Duration // memory: how long the pairs sit idle
	connects   int
	sequential int
	burst      int
	pairs      int
	parts      map[string]bool
}

// plan applies -bench-quick's sizes to every flag not given explicitly, then
// the same lower bounds as relay-cli.
func (f *benchFlags) plan() (benchPlan, error) {
	set := map[string]bool{}
	flag.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	q := *f.quick
	pick := func(name string, given, quick float64) float64 {
		if q && !set[name] {
			return quick
		}
		return given
	}
	window := math.Max(pick("bench-window", *f.window, 0.5), 0.1)
	probe := 1.0
	if q {
		probe = 0.3
	}
	p := benchPlan{
		quick:      q,
		window:     secs(window),
		probe:      secs(math.Min(probe, window)),
		idle:       2 * time.Second,
		connects:   max(int(pick("bench-connects", float64(*f.connects), 3)), 1),
		sequential: max(int(pick("bench-requests", float64(*f.requests), 200)), 1),
		pairs:      max(int(pick("bench-pairs", float64(*f.pairs), 5)), 1),
		parts:      map[string]bool{},
	}
	if q {
		p.idle = 300 * time.Millisecond
	}
	p.burst = p.sequential * 10
	for _, part := range strings.Split(*f.only, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		known := false
		for _, k := range benchParts {
			known = known || k == part
		}
		if !known {
			return p, fmt.Errorf("-bench-only: unknown part %q (want a comma-separated subset of %s)", part, strings.Join(benchParts, ","))
		}
		p.parts[part] = true
	}
	if len(p.parts) == 0 {
		for _, k := range benchParts {
			p.parts[k] = true
		}
	}
	return p, nil
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func benchStep(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// benchReport is the JSON printed on stdout. A part not asked for is
// absent; a part that failed is {"error": "..."}.
type benchReport struct {
	PionVersion string `json:"pion_version"`
	GoVersion   string `json:"go_version"`
	Quick       bool   `json:"quick"`
	CPUs        int    `json:"cpus"`
	Ready       any    `json:"ready,omitempty"`
	Requests    any    `json:"requests,omitempty"`
	RTP         any    `json:"rtp,omitempty"`
	Memory      any    `json:"memory,omitempty"`
}

type benchError struct {
	Error string `json:"error"`
}

func runBench(f *benchFlags) int {
	plan, err := f.plan()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	started := time.Now()
	rep := benchReport{PionVersion: pionVersion, GoVersion: runtime.Version(), Quick: plan.quick, CPUs: runtime.NumCPU()}
	ok := true
	// run stores a part's result, or its error, in the report.
	run := func(part string, slot *any, measure func() (any, error)) {
		if !plan.parts[part] {
			return
		}
		res, err := measure()
		if err != nil {
			ok = false
			benchStep("%s failed: %v", part, err)
			if res == nil {
				res = benchError{Error: err.Error()}
			}
		}
		*slot = res
	}

	// Memory first, before the other parts grow (and free) the heap: Go
	// keeps freed pages for reuse, so pairs connected later would fill
	// them without raising VmRSS.
	run("memory", &rep.Memory, func() (any, error) {
		benchStep("memory: %d idle pairs ...", plan.pairs)
		return benchMemory(plan.pairs, plan.idle)
	})
	run("ready", &rep.Ready, func() (any, error) {
		benchStep("time to Ready: %d connects ...", plan.connects)
		return benchReady(plan.connects)
	})
	run("requests", &rep.Requests, func() (any, error) {
		benchStep("requests: %d sequential, %d with %d in flight ...", plan.sequential, plan.burst, benchInFlight)
		return benchRequests(plan.sequential, plan.burst, benchInFlight)
	})
	run("rtp", &rep.RTP, func() (any, error) {
		benchStep("RTP throughput: search, then a %s confirmation ...", plan.window)
		return benchRTP(plan.probe, plan.window)
	})

	out, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: marshal report:", err)
		return 1
	}
	fmt.Println(string(out))
	benchStep("done in %.1f s", time.Since(started).Seconds())
	if !ok {
		return 1
	}
	return 0
}

// --- pairs -------------------------------------------------------------

// benchSide is one relay peer of a pair and the moment it became Ready.
type benchSide struct {
	peer    *relayPeer
	readyAt time.Time     // valid once ready is closed
	ready   chan struct{} // closed when the signalling channel is open here
	closed  chan struct{} // closed when the peer closed (e.g. start failed)
	// done is set when the bench closes the pair: closing one side makes
	// the other's channels fail (DTLS close_notify) before its own Close.
	done atomic.Bool
}

// up reports whether errors on this side are worth printing.
func (s *benchSide) up() bool { return !s.done.Load() && !s.peer.closing.Load() }

// answererApp is what the answering application does with what arrives;
// nil fields mean "ignore".
type answererApp struct {
	onRequest func(event string, msg inboundMessage)
	onTrack   func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver)
}

// echoApp replies to every request with the request's own payload. It
// replies inline, on pion's data channel read loop, as the interop peer's
// application does (that is the Go answerer `relay bench` measures its own
// offerer against).
var echoApp = answererApp{onRequest: func(_ string, msg inboundMessage) {
	if msg.internal {
		return // ion_relay_request: the relay answers it itself
	}
	if err := msg.Reply(msg.payload); err != nil {
		fmt.Fprintf(os.Stderr, "bench: echo reply: %v\n", err)
	}
}}

// quiet is the relay's own logger: it logs every ICE/DTLS state change,
// which for hundreds of connects would only slow the bench down. Errors
// still reach stderr through onError.
var quiet = log.New(io.Discard, "", 0)

func newBenchSide(offerer bool, meta peerMeta, app answererApp) (*benchSide, error) {
	api, me, err := newAPI(offerer, false)
	if err != nil {
		return nil, err
	}
	s := &benchSide{ready: make(chan struct{}), closed: make(chan struct{})}
	var readyOnce, closeOnce sync.Once
	name := "answer"
	if offerer {
		name = "offer"
	}
	// Teardown produces errors that mean nothing; only what happens while
	// the peer is up is reported.
	s.peer, err = newRelayPeer(meta, api, me, peerHandlers{
		onReady: func() {
			readyOnce.Do(func() {
				s.readyAt = time.Now()
				close(s.ready)
			})
		},
		onClose:   func(string) { closeOnce.Do(func() { close(s.closed) }) },
		onRequest: app.onRequest,
		onTrack: func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, _ *trackMeta, _ webrtc.RTPCodingParameters) {
			if app.onTrack != nil {
				app.onTrack(track, recv)
			}
		},
		onError: func(err error) {
			if s.up() {
				fmt.Fprintf(os.Stderr, "bench: %s %s: %v\n", meta.SessionID, name, err)
			}
		},
		onChannelError: func(label string, err error) {
			if s.up() {
				fmt.Fprintf(os.Stderr, "bench: %s %s: channel %s: %v\n", meta.SessionID, name, label, err)
			}
		},
	}, quiet)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// benchPair is a connected offerer and answerer, with each side's time to
// Ready counted from the start of Offer.
type benchPair struct {
	off, ans           *benchSide
	offReady, ansReady time.Duration
}

func (p *benchPair) both() time.Duration {
	if p.offReady > p.ansReady {
		return p.offReady
	}
	return p.ansReady
}

// close closes both sides. Both are in this process, so there is no need to
// wait for the answerer to notice the offerer going (pion would take ~5 s of
// ICE silence).
func (p *benchPair) close() {
	sides := []*benchSide{p.off}
	if p.ans != nil {
		sides = append(sides, p.ans)
	}
	for _, s := range sides {
		s.done.Store(true)
	}
	for _, s := range sides {
		s.peer.Close("bench done")
	}
}

// connectPair connects an offerer to an answerer made inside the signal
// function, as a remote server would make it on receiving the offer (as
// ours does). The offerer's relay peer (pion API, ICE gatherer, DTLS and
// SCTP objects) exists before the clock starts; its sockets are bound
// inside Offer, because pion's gatherer binds them when gathering, which
// ion-sfu's Offer starts. The clock stops for each side when its
// signalling channel is open (the relay's onReady).
func connectPair(index int, app answererApp) (*benchPair, error) {
	session := "bench-" + strconv.Itoa(index)
	off, err := newBenchSide(true, peerMeta{PeerID: "bench-offerer", SessionID: session}, answererApp{})
	if err != nil {
		return nil, err
	}
	p := &benchPair{off: off}
	started := time.Now()
	err = off.peer.Offer(func(_ peerMeta, offer []byte) ([]byte, error) {
		ans, err := newBenchSide(false, peerMeta{PeerID: "bench-answerer", SessionID: session}, app)
		if err != nil {
			return nil, err
		}
		p.ans = ans
		return ans.peer.Answer(offer)
	})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("connect %s: %w", session, err)
	}
	timeout := time.NewTimer(benchConnectTimeout)
	defer timeout.Stop()
	for _, s := range []*benchSide{p.off, p.ans} {
		select {
		case <-s.ready:
		case <-s.closed:
			p.close()
			return nil, fmt.Errorf("connect %s: a side closed before it was ready", session)
		case <-timeout.C:
			p.close()
			return nil, fmt.Errorf("connect %s: not ready on both sides after %s", session, benchConnectTimeout)
		}
	}
	p.offReady = p.off.readyAt.Sub(started)
	p.ansReady = p.ans.readyAt.Sub(started)
	return p, nil
}

// spread is relay-cli's report::Spread: the sample at rank ceil(n*q) of the
// sorted samples (1-based, clamped to 1..n).
type spread struct{ median, p99, max time.Duration }

func spreadOf(samples []time.Duration) spread {
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration {
		i := int(math.Ceil(float64(len(s)) * q))
		if i < 1 {
			i = 1
		}
		if i > len(s) {
			i = len(s)
		}
		return s[i-1]
	}
	return spread{median: at(0.5), p99: at(0.99), max: s[len(s)-1]}
}

// round keeps a few digits: the JSON is read by people too.
func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func msOf(d time.Duration) float64 { return round(d.Seconds()*1e3, 3) }
func usOf(d time.Duration) float64 { return round(d.Seconds()*1e6, 1) }

// --- ready ---------------------------------------------------------------

type readyResult struct {
	Connects         int     `json:"connects"`
	OffererMedianMs  float64 `json:"offerer_median_ms"`
	OffererP99Ms     float64 `json:"offerer_p99_ms"`
	AnswererMedianMs float64 `json:"answerer_median_ms"`
	AnswererP99Ms    float64 `json:"answerer_p99_ms"`
	BothMedianMs     float64 `json:"both_median_ms"`
	BothP99Ms        float64 `json:"both_p99_ms"`
	BothMaxMs        float64 `json:"both_max_ms"`
}

// benchReady connects `count` pairs in turn (after one unmeasured warm-up),
// closing each before the next.
func benchReady(count int) (any, error) {
	warm, err := connectPair(-1, answererApp{})
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	warm.close()
	var off, ans, both []time.Duration
	for i := 0; i < count; i++ {
		p, err := connectPair(i, answererApp{})
		if err != nil {
			return nil, err
		}
		off = append(off, p.offReady)
		ans = append(ans, p.ansReady)
		both = append(both, p.both())
		p.close()
	}
	o, a, b := spreadOf(off), spreadOf(ans), spreadOf(both)
	return readyResult{
		Connects:        count,
		OffererMedianMs: msOf(o.median), OffererP99Ms: msOf(o.p99),
		AnswererMedianMs: msOf(a.median), AnswererP99Ms: msOf(a.p99),
		BothMedianMs: msOf(b.median), BothP99Ms: msOf(b.p99), BothMaxMs: msOf(b.max),
	}, nil
}

// --- requests ------------------------------------------------------------

type requestsResult struct {
	Sequential int     `json:"sequential"`
	RTTMedian  float64 `json:"rtt_median_us"`
	RTTP99     float64 `json:"rtt_p99_us"`
	RTTMax     float64 `json:"rtt_max_us"`
	Burst      int     `json:"burst"`
	InFlight   int     `json:"in_flight"`
	PerS       float64 `json:"per_s"`
	BurstS     float64 `json:"burst_elapsed_s"`
}

// benchRequests: on one pair whose answerer echoes, `sequential` requests
// one at a time (after 10 % + 1 unmeasured ones), then `burst` requests by
// `inFlight` goroutines sharing a counter.
func benchRequests(sequential, burst, inFlight int) (any, error) {
	p, err := connectPair(0, echoApp)
	if err != nil {
		return nil, err
	}
	defer p.close()
	peer := p.off.peer
	payload := bytes.Repeat([]byte{'x'}, benchRequestSize)
	request := func() ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), benchRequestTimeout)
		defer cancel()
		return peer.Request(ctx, "echo", payload, nil)
	}

	for i := 0; i < sequential/10+1; i++ {
		if _, err := request(); err != nil {
			return nil, fmt.Errorf("warm-up request: %w", err)
		}
	}
	rtts := make([]time.Duration, 0, sequential)
	for i := 0; i < sequential; i++ {
		sent := time.Now()
		reply, err := request()
		rtts = append(rtts, time.Since(sent))
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		if !bytes.Equal(reply, payload) {
			return nil, errors.New("a reply did not carry the request's payload")
		}
	}
	s := spreadOf(rtts)

	// Each worker takes the next index and stops once the counter has
	// passed the total, so exactly `burst` requests are sent.
	var next, answered atomic.Int64
	var wg sync.WaitGroup
	var failMu sync.Mutex
	var failure error
	begun := time.Now()
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1)-1 < int64(burst) {
				if _, err := request(); err != nil {
					failMu.Lock()
					failure = err
					failMu.Unlock()
					return
				}
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begun)
	if failure != nil {
		return nil, fmt.Errorf("request with %d in flight: %w", inFlight, failure)
	}
	return requestsResult{
		Sequential: sequential,
		RTTMedian:  usOf(s.median), RTTP99: usOf(s.p99), RTTMax: usOf(s.max),
		Burst: burst, InFlight: inFlight,
		PerS:   round(float64(answered.Load())/math.Max(elapsed.Seconds(), 1e-9), 1),
		BurstS: round(elapsed.Seconds(), 4),
	}, nil
}

// --- memory --------------------------------------------------------------

type memoryResult struct {
	Pairs           int     `json:"pairs"`
	KiBPerPair      float64 `json:"kib_per_pair"`
	BeforeKiB       uint64  `json:"before_kib"`
	AfterKiB        uint64  `json:"after_kib"`
	HeapKiBPerPair  float64 `json:"heap_kib_per_pair"`
	StackKiBPerPair float64 `json:"stack_kib_per_pair"`
	GoroutinesPer   float64 `json:"goroutines_per_pair"`
	IdleS           float64 `json:"idle_s"`
}

// rssKiB reads VmRSS from /proc/self/status.
func rssKiB() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "VmRSS:" {
			return strconv.ParseUint(fields[1], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/self/status")
}

// benchMemory connects `pairs` pairs one after the other (after one
// warm-up pair, closed), lets them idle, and reads VmRSS before and after.
// The Go heap figures are read after a GC on both sides, so they count what
// the pairs keep alive; VmRSS is read as it is (no GC first), as ours.
func benchMemory(pairs int, idle time.Duration) (any, error) {
	warm, err := connectPair(-1, echoApp)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	warm.close()
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	// Hands freed pages back to the kernel, so "before" is not inflated by
	// garbage from the warm-up that RSS would still count.
	debug.FreeOSMemory()
	before, err := rssKiB()
	if err != nil {
		return nil, err
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	live := make([]*benchPair, 0, pairs)
	defer func() {
		for _, p := range live {
			p.close()
		}
	}()
	for i := 0; i < pairs; i++ {
		p, err := connectPair(i, echoApp)
		if err != nil {
			return nil, err
		}
		live = append(live, p)
	}
	time.Sleep(idle)
	after, err := rssKiB()
	if err != nil {
		return nil, err
	}
	g1 := runtime.NumGoroutine()
	runtime.GC()
	runtime.ReadMemStats(&m1)

	n := float64(pairs)
	perPair := func(a, b uint64) float64 { return round((float64(b)-float64(a))/1024/n, 1) }
	rss := 0.0
	if after > before {
		rss = float64(after-before) / n
	}
	return memoryResult{
		Pairs:           pairs,
		KiBPerPair:      round(rss, 1),
		BeforeKiB:       before,
		AfterKiB:        after,
		HeapKiBPerPair:  perPair(m0.HeapInuse, m1.HeapInuse),
		StackKiBPerPair: perPair(m0.StackInuse, m1.StackInuse),
		GoroutinesPer:   round(float64(g1-g0)/n, 1),
		IdleS:           idle.Seconds(),
	}, nil
}

// --- RTP -----------------------------------------------------------------

// rtpCounter is what the receiving application counts: packets whose
// extended sequence number falls in the current trial's range, each number
// once, so stragglers of an earlier trial (or a duplicate) never count.
type rtpCounter struct {
	mu        sync.Mutex
	lo, hi    uint64
	seen      []uint64 // bit set over [lo, hi)
	delivered uint64
}

func (c *rtpCounter) arm(lo, hi uint64) {
	c.mu.Lock()
	c.lo, c.hi = lo, hi
	c.seen = make([]uint64, (hi-lo+63)/64)
	c.delivered = 0
	c.mu.Unlock()
}

func (c *rtpCounter) record(n uint64) {
	c.mu.Lock()
	if n >= c.lo && n < c.hi {
		i := n - c.lo
		if bit := uint64(1) << (i % 64); c.seen[i/64]&bit == 0 {
			c.seen[i/64] |= bit
			c.delivered++
		}
	}
	c.mu.Unlock()
}

func (c *rtpCounter) count() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.delivered
}

// readCounted reads the remote track with ReadRTP (as an ion-sfu
// application would) until it ends, extending the 16-bit sequence number
// across wraps. The sender numbers packets from 0, so the extension starts
// at the first packet's own number and equals the sender's count.
func readCounted(track *webrtc.TrackRemote, c *rtpCounter) {
	var high uint64 // extended number of the highest packet so far
	var highSeq uint16
	first := true
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			if errors.Is(err, webrtc.ErrCodecNotFound) {
				continue
			}
			return // closed
		}
		seq := pkt.SequenceNumber
		if first {
			high, highSeq, first = uint64(seq), seq, false
			c.record(high)
			continue
		}
		d := int64(int16(seq - highSeq))
		n := int64(high) + d
		if n < 0 {
			continue
		}
		if d > 0 {
			high, highSeq = uint64(n), seq
		}
		c.record(uint64(n))
	}
}

// cpuSeconds is this process's user+system CPU time (all threads), from
// getrusage(RUSAGE_SELF), to the microsecond.
func cpuSeconds() (float64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), nil
}

// rtpLink is a pair with one VP8 track from the offerer to the answerer.
type rtpLink struct {
	pair    *benchPair
	track   *webrtc.TrackLocalStaticRTP
	counter *rtpCounter
	next    uint64 // the next packet's number; its sequence number is the low 16 bits
	ts      uint32
	payload []byte
}

func openRTPLink() (*rtpLink, error) {
	counter := &rtpCounter{}
	app := answererApp{onTrack: func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		go readCounted(track, counter)
		// Nothing sends RTCP here (no interceptors), but drain it anyway so
		// a buffer can never fill, as the interop peer does.
		go func() {
			for {
				if _, _, err := recv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}}
	p, err := connectPair(0, app)
	if err != nil {
		return nil, err
	}
	track, err := webrtc.NewTrackLocalStaticRTP(vp8Codec.RTPCodecCapability, "bench-video", "bench")
	if err != nil {
		p.close()
		return nil, err
	}
	// The relay's AddTrack: ion_relay_request, then RTPSender.Send.
	sender, _, err := p.off.peer.AddTrack(track, vp8Codec, 0, nil)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("add track: %w", err)
	}
	go func() {
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	// A VP8 payload descriptor (S=1, partition 0), then filler, as ours.
	payload := make([]byte, benchPayload)
	payload[0] = 0x10
	l := &rtpLink{pair: p, track: track, counter: counter, payload: payload}
	// Let the remote's track exist before counting anything (as ours),
	// and make sure packets get through at all.
	warm, err := l.trial(1000, 200*time.Millisecond)
	if err != nil {
		l.close()
		return nil, err
	}
	if warm.Delivered == 0 {
		l.close()
		return nil, errors.New("no RTP arrived in the warm-up (1,000 packets/s for 200 ms)")
	}
	return l, nil
}

func (l *rtpLink) close() { l.pair.close() }

// rtpTrial is one paced run at a fixed rate.
type rtpTrial struct {
	Rate     float64 `json:"rate"`       // packets/s asked of the sender
	Duration float64 `json:"duration_s"` // the trial's window
	// Offered is what the schedule called for (rate x duration), Sent
	// what the sender wrote (fewer only if it fell 50 ms behind).
	Offered   uint64  `json:"offered"`
	Sent      uint64  `json:"sent"`
	Delivered uint64  `json:"delivered"`
	Loss      float64 `json:"loss"`
	CPUUs     float64 `json:"cpu_us_per_packet"`

	cpuS float64
}

func (t rtpTrial) passed() bool { return t.Loss <= benchMaxLoss }

// trial sends at `rate` packets/s for `window` in 1 ms steps, each writing
// what the schedule owes by then (so the fraction of a packet per step
// carries over, and a late tick catches up), then waits for stragglers and
// counts what the receiver read of this trial's packets.
func (l *rtpLink) trial(rate float64, window time.Duration) (rtpTrial, error) {
	offered := uint64(math.Round(rate * window.Seconds()))
	lo, hi := l.next, l.next+offered
	l.counter.arm(lo, hi)
	cpu0, err := cpuSeconds()
	if err != nil {
		return rtpTrial{}, err
	}
	tsStep := uint32(math.Max(90000/rate, 1))
	pkt := &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: uint8(vp8Codec.PayloadType)},
		Payload: l.payload,
	}
	var sent uint64
	tick := time.NewTicker(time.Millisecond)
	started := time.Now()
	for sent < offered {
		<-tick.C // a missed tick is dropped, not queued
		elapsed := time.Since(started)
		if elapsed > window+50*time.Millisecond {
			break // the sender fell behind; the rest counts as lost
		}
		due := uint64(rate * elapsed.Seconds())
		if due > offered {
			due = offered
		}
		for ; sent < due; sent++ {
			l.ts += tsStep
			pkt.SequenceNumber = uint16(l.next)
			pkt.Timestamp = l.ts
			// WriteRTP copies the packet before the track rewrites SSRC
			// and payload type, so one packet can be reused.
			if err := l.track.WriteRTP(pkt); err != nil {
				tick.Stop()
				return rtpTrial{}, fmt.Errorf("WriteRTP: %w", err)
			}
			l.next++
		}
	}
	tick.Stop()
	// Numbers the sender never used are skipped, as a gap.
	l.next = hi
	// Drain: until all arrived, or nothing new for 200 ms (at most 2 s).
	drainUntil := time.Now().Add(2 * time.Second)
	last := l.counter.count()
	for time.Now().Before(drainUntil) && last < sent {
		time.Sleep(200 * time.Millisecond)
		now := l.counter.count()
		if now == last {
			break
		}
		last = now
	}
	cpu1, err := cpuSeconds()
	if err != nil {
		return rtpTrial{}, err
	}
	delivered := l.counter.count()
	if delivered > offered {
		delivered = offered
	}
	loss := 1.0
	if offered > 0 {
		loss = math.Max(1-float64(delivered)/float64(offered), 0)
	}
	cpu := cpu1 - cpu0
	t := rtpTrial{
		Rate: round(rate, 1), Duration: window.Seconds(),
		Offered: offered, Sent: sent, Delivered: delivered, Loss: round(loss, 6),
		CPUUs: round(cpu*1e6/math.Max(float64(delivered), 1), 3),
		cpuS:  cpu,
	}
	benchStep("rtp trial: %.0f packets/s for %s: %d sent, %d delivered, loss %.3f %%", rate, window, sent, delivered, loss*100)
	return t, nil
}

type rtpResult struct {
	Rate      float64    `json:"rate"`
	MbitS     float64    `json:"mbit_s"`
	Loss      float64    `json:"loss"`
	Steps     int        `json:"steps"`
	WindowS   float64    `json:"window_s"`
	CPUUs     float64    `json:"cpu_us_per_packet"`
	CPUS      float64    `json:"cpu_s"`
	Sent      uint64     `json:"sent"`
	Delivered uint64     `json:"delivered"`
	Payload   int        `json:"payload_bytes"`
	Trials    []rtpTrial `json:"trials"`
}

type rtpFailure struct {
	Error  string     `json:"error"`
	Trials []rtpTrial `json:"trials,omitempty"`
}

// benchRTP searches the highest rate delivered with at most 0.1 % loss:
// from 5,000 packets/s up by half per probe while probes pass (down by half
// if the start already fails), a bisection (geometric, as ours) to within
// 5 %, then a confirmation over the full window, stepping down 10 % per
// failed confirmation until one holds or the rate falls under 100/s.
func benchRTP(probe, window time.Duration) (any, error) {
	l, err := openRTPLink()
	if err != nil {
		return nil, err
	}
	defer l.close()
	var trials []rtpTrial
	fail := func(err error) (any, error) {
		return rtpFailure{Error: err.Error(), Trials: trials}, err
	}
	try := func(rate float64, d time.Duration) (rtpTrial, error) {
		t, err := l.trial(rate, d)
		if err == nil {
			trials = append(trials, t)
		}
		return t, err
	}

	pass, bad := 0.0, math.Inf(1)
	rate := benchStartRate
	for {
		t, err := try(rate, probe)
		if err != nil {
			return fail(err)
		}
		if t.passed() {
			pass = rate
			if !math.IsInf(bad, 1) || rate >= benchCeilingRate {
				break
			}
			rate *= 1.5
		} else {
			bad = rate
			if pass > 0 || rate/2 < benchFloorRate {
				break
			}
			rate /= 2
		}
	}
	if pass == 0 {
		return fail(fmt.Errorf("no probe delivered with at most %.1f %% loss, down to %.0f packets/s", benchMaxLoss*100, rate))
	}
	for !math.IsInf(bad, 1) && bad/pass > 1.05 {
		rate := math.Sqrt(pass * bad)
		t, err := try(rate, probe)
		if err != nil {
			return fail(err)
		}
		if t.passed() {
			pass = rate
		} else {
			bad = rate
		}
	}

	steps := 0
	for rate := pass; ; rate *= 0.9 {
		if rate < benchFloorRate {
			return fail(fmt.Errorf("no %s window held at most %.1f %% loss, down to %.0f packets/s", window, benchMaxLoss*100, benchFloorRate))
		}
		t, err := try(rate, window)
		if err != nil {
			return fail(err)
		}
		if t.passed() {
			pps := float64(t.Delivered) / math.Max(window.Seconds(), 1e-9)
			return rtpResult{
				Rate:    round(pps, 1),
				MbitS:   round(pps*benchPayload*8/1e6, 3),
				Loss:    t.Loss,
				Steps:   steps,
				WindowS: window.Seconds(),
				CPUUs:   t.CPUUs,
				CPUS:    round(t.cpuS, 4),
				Sent:    t.Sent, Delivered: t.Delivered,
				Payload: benchPayload,
				Trials:  trials,
			}, nil
		}
		steps++
	}
}
