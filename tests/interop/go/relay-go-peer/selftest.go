package main

// selftest.go runs an offerer and an answerer in one process, connected over
// loopback with the signal handed over in memory, and drives both through the
// same command handler that serves stdin. It proves the peer works before a
// Rust test relies on it, and can dump what it put on the wire for
// comparison with the ion-sfu captures.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// recorder keeps one side's events for the checks and mirrors them to
// stderr.
type recorder struct {
	name   string
	mu     sync.Mutex
	events []event
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "[%s] %s\n", r.name, e)
}

func (r *recorder) all(match func(event) bool) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event
	for _, e := range r.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// waitN waits until at least n events match; returns the matches so far.
func (r *recorder) waitN(n int, timeout time.Duration, match func(event) bool) []event {
	deadline := time.Now().Add(timeout)
	for {
		got := r.all(match)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ofType(typ string, conds ...func(event) bool) func(event) bool {
	return func(e event) bool {
		if e.Type() != typ {
			return false
		}
		for _, c := range conds {
			if !c(e) {
				return false
			}
		}
		return true
	}
}

func field(key string, want any) func(event) bool {
	return func(e event) bool { return fmt.Sprint(e.Get(key)) == fmt.Sprint(want) }
}

func payloadIs(key string, want []byte) func(event) bool {
	return func(e event) bool {
		got, _ := e.Get(key).([]byte)
		return bytes.Equal(got, want) && (got == nil) == (want == nil)
	}
}

type selfTest struct {
	failures []string
	summary  []any // ordered key/value pairs for the summary line
}

func (t *selfTest) check(ok bool, format string, args ...any) bool {
	if !ok {
		msg := fmt.Sprintf(format, args...)
		t.failures = append(t.failures, msg)
		fmt.Fprintf(os.Stderr, "SELF-TEST FAILURE: %s\n", msg)
	}
	return ok
}

func (t *selfTest) note(key string, value any) { t.summary = append(t.summary, key, value) }

func runSelfTest(dumpDir string) int {
	t := &selfTest{}
	recO := &recorder{name: "offer"}
	recA := &recorder{name: "answer"}

	// Every raw signalling message, as received (i.e. as the other side
	// sent it), for the fixture comparison.
	var rawMu sync.Mutex
	var raw [][]byte
	rawHook := func(b []byte) {
		rawMu.Lock()
		raw = append(raw, append([]byte(nil), b...))
		rawMu.Unlock()
	}

	meta := peerMeta{PeerID: "self-test-peer", SessionID: "self-test-session"}
	offCtl, err := newController(true, meta, false, recO.add, log.New(os.Stderr, "relay-go-peer[offer] ", log.Lmicroseconds), rawHook)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ansCtl, err := newController(false, meta, false, recA.add, log.New(os.Stderr, "relay-go-peer[answer] ", log.Lmicroseconds), rawHook)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// 1. One out-of-band round trip, then both sides must become ready.
	var offerJSON, answerJSON []byte
	err = offCtl.peer.Offer(func(m peerMeta, offer []byte) ([]byte, error) {
		offerJSON = offer
		ansCtl.markSignalled()
		answer, err := ansCtl.peer.Answer(offer)
		answerJSON = answer
		offCtl.markSignalled()
		return answer, err
	})
	if !t.check(err == nil, "offer: %v", err) {
		return t.finish(offCtl, ansCtl)
	}
	readyO := recO.waitN(1, 10*time.Second, ofType("ready"))
	readyA := recA.waitN(1, 10*time.Second, ofType("ready"))
	if !t.check(len(readyO) == 1 && len(readyA) == 1, "both sides ready (offer %d, answer %d)", len(readyO), len(readyA)) {
		return t.finish(offCtl, ansCtl)
	}
	t.note("readyMs", map[string]any{"offer": readyO[0].Get("elapsedMs"), "answer": readyA[0].Get("elapsedMs")})

	// 2. Echo requests both ways: the remote application answers "echo*".
	const echoes = 3
	for i := 0; i < echoes; i++ {
		offCtl.handle(command{Cmd: "request", Event: "echo", Payload: []byte(fmt.Sprintf("ping-%d from offer", i))})
		ansCtl.handle(command{Cmd: "request", Event: "echo", Payload: []byte(fmt.Sprintf("ping-%d from answer", i))})
	}
	repO := recO.waitN(echoes, 5*time.Second, ofType("reply", field("event", "echo")))
	repA := recA.waitN(echoes, 5*time.Second, ofType("reply", field("event", "echo")))
	t.check(len(repO) == echoes && len(repA) == echoes, "echo replies (offer %d, answer %d, want %d each)", len(repO), len(repA), echoes)
	for i := 0; i < echoes; i++ {
		t.check(len(recO.all(ofType("reply", payloadIs("payload", []byte(fmt.Sprintf("ping-%d from offer", i)))))) == 1,
			"offer got its echo %d back unchanged", i)
		t.check(len(recA.all(ofType("reply", payloadIs("payload", []byte(fmt.Sprintf("ping-%d from answer", i)))))) == 1,
			"answer got its echo %d back unchanged", i)
	}
	// Reply ids must be the ones announced in request_sent.
	sentIDs := map[string]bool{}
	for _, e := range append(recO.all(ofType("request_sent")), recA.all(ofType("request_sent"))...) {
		sentIDs[e.Str("id")] = true
	}
	for _, e := range append(repO, repA...) {
		t.check(sentIDs[e.Str("id")], "reply id %s matches a request_sent id", e.Str("id"))
	}
	t.note("echoReplies", map[string]int{"offer": len(repO), "answer": len(repA)})

	// 3. Emits (with and without payload) arrive as requests and get no
	// reply; an unanswered request times out on the sender only.
	offCtl.handle(command{Cmd: "emit", Event: "hello", Payload: []byte("hello from offer")})
	ansCtl.handle(command{Cmd: "emit", Event: "note", Payload: nil})
	offCtl.handle(command{Cmd: "request", Event: "unanswered", TimeoutMs: 300})
	gotHello := recA.waitN(1, 3*time.Second, ofType("request", field("event", "hello"), payloadIs("payload", []byte("hello from offer"))))
	gotNote := recO.waitN(1, 3*time.Second, ofType("request", field("event", "note"), payloadIs("payload", nil)))
	failed := recO.waitN(1, 3*time.Second, ofType("request_failed", field("event", "unanswered")))
	t.check(len(gotHello) == 1, "answer saw the offer's emit")
	t.check(len(gotNote) == 1, "offer saw the answer's emit with a null payload")
	t.check(len(failed) == 1 && strings.Contains(failed[0].Str("reason"), "deadline"), "unanswered request timed out: %v", failed)
	t.note("emitsSeen", len(gotHello)+len(gotNote))

	// 4. Tracks: one VP8 and one Opus each way, one at a time, because two
	// concurrent adds deadlock on the peer lock until both time out (an
	// ion-sfu property). Video uses a chosen SSRC, audio the sender's own.
	const packets = 50
	adds := []struct {
		ctl         *controller
		rec         *recorder
		kind, track string
		ssrc        uint32
	}{
		{offCtl, recO, "video", "video-from-offer", 1111111111},
		{offCtl, recO, "audio", "audio-from-offer", 0},
		{ansCtl, recA, "video", "video-from-answer", 2222222222},
		{ansCtl, recA, "audio", "audio-from-answer", 0},
	}
	added := map[string]event{}
	for _, a := range adds {
		a.ctl.handle(command{Cmd: "add_track", Kind: a.kind, SSRC: a.ssrc, StreamID: "stream-" + a.rec.name,
			TrackID: a.track, Packets: packets, IntervalMs: 10})
		got := a.rec.waitN(1, 3*time.Second, ofType("track_added", field("trackId", a.track)))
		if t.check(len(got) == 1, "track_added for %s", a.track) {
			added[a.track] = got[0]
			if a.ssrc != 0 {
				t.check(fmt.Sprint(got[0].Get("ssrc")) == fmt.Sprint(a.ssrc), "%s uses the chosen ssrc", a.track)
			}
		}
	}
	tracksO := recO.waitN(2, 3*time.Second, ofType("track"))
	tracksA := recA.waitN(2, 3*time.Second, ofType("track"))
	t.check(len(tracksO) == 2 && len(tracksA) == 2, "remote tracks reported (offer %d, answer %d)", len(tracksO), len(tracksA))
	for _, tr := range append(tracksO, tracksA...) {
		sent, ok := added[tr.Str("trackId")]
		if t.check(ok, "track %s was added by the other side", tr.Str("trackId")) {
			for _, k := range []string{"ssrc", "payloadType", "mimeType", "streamId"} {
				t.check(fmt.Sprint(sent.Get(k)) == fmt.Sprint(tr.Get(k)), "track %s: %s %v == %v", tr.Str("trackId"), k, tr.Get(k), sent.Get(k))
			}
		}
	}
	rtpCounts := map[string]uint64{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		done := true
		for _, ctl := range []*controller{offCtl, ansCtl} {
			ctl.mu.Lock()
			for _, in := range ctl.inbound {
				n := in.count.Load()
				rtpCounts[fmt.Sprint(uint32(in.ssrc))] = n
				if n < packets {
					done = false
				}
			}
			ctl.mu.Unlock()
		}
		if (done && len(rtpCounts) == 4) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for ssrc, n := range rtpCounts {
		t.check(n == packets, "rtp on ssrc %s: got %d, want %d", ssrc, n, packets)
	}
	t.check(len(rtpCounts) == 4, "rtp counted on 4 tracks, got %d", len(rtpCounts))
	t.note("tracks", map[string]int{"offer": len(tracksO), "answer": len(tracksA)})
	t.note("rtp", rtpCounts)

	// 5. PLI both ways: to a chosen-SSRC sender and to a default-SSRC one.
	pliTargets := []struct {
		from    *controller
		to      *recorder
		trackID string
	}{
		{offCtl, recA, "video-from-answer"},
		{ansCtl, recO, "audio-from-offer"},
	}
	plis := 0
	for _, p := range pliTargets {
		ssrc := fmt.Sprint(added[p.trackID].Get("ssrc"))
		var n uint32
		fmt.Sscan(ssrc, &n)
		p.from.handle(command{Cmd: "pli", SSRC: n})
		got := p.to.waitN(1, 3*time.Second, ofType("pli", field("ssrc", ssrc)))
		if t.check(len(got) >= 1, "pli for %s (ssrc %s) reached its sender", p.trackID, ssrc) {
			plis++
		}
	}
	t.note("pli", plis)

	// 6. Data channels, one each way. The offerer's first own channel gets
	// id 1 from ion-sfu's counter (its signalling channel took 0). The
	// answerer's counter would also hand out 0 first (see 7), so its
	// channel uses an explicit id here.
	offCtl.handle(command{Cmd: "create_data_channel", Label: "dc-from-offer"})
	explicitID := uint16(3)
	ansCtl.handle(command{Cmd: "create_data_channel", Label: "dc-from-answer", ID: &explicitID})
	dcO := recO.waitN(1, 3*time.Second, ofType("data_channel", field("label", "dc-from-offer"), field("origin", "local")))
	if t.check(len(dcO) == 1, "offer opened its data channel") {
		t.check(fmt.Sprint(dcO[0].Get("id")) == "1", "offer's channel has id 1, got %v", dcO[0].Get("id"))
	}
	dcA := recA.waitN(1, 3*time.Second, ofType("data_channel", field("label", "dc-from-offer"), field("origin", "remote")))
	dcA2 := recA.waitN(1, 3*time.Second, ofType("data_channel", field("label", "dc-from-answer"), field("origin", "local")))
	dcO2 := recO.waitN(1, 3*time.Second, ofType("data_channel", field("label", "dc-from-answer"), field("origin", "remote"), field("id", 3)))
	t.check(len(dcA) == 1 && len(dcA2) == 1 && len(dcO2) == 1, "data channels seen on both sides")
	offCtl.handle(command{Cmd: "send", Label: "dc-from-offer", Data: []byte("data from offer")})
	ansCtl.handle(command{Cmd: "send", Label: "dc-from-answer", Data: []byte("data from answer")})
	msgA := recA.waitN(1, 3*time.Second, ofType("dc_message", field("label", "dc-from-offer"), payloadIs("data", []byte("data from offer"))))
	msgO := recO.waitN(1, 3*time.Second, ofType("dc_message", field("label", "dc-from-answer"), payloadIs("data", []byte("data from answer"))))
	t.check(len(msgA) == 1 && len(msgO) == 1, "data channel messages crossed both ways")
	t.note("dataChannels", len(dcO)+len(dcA2))
	t.note("dcMessages", len(msgA)+len(msgO))

	// Captures for check_fixture_keys.py.
	if dumpDir != "" {
		if err := dumpCaptures(dumpDir, offerJSON, answerJSON, recA, &rawMu, &raw); err != nil {
			t.check(false, "dump: %v", err)
		}
	}

	// 7. The ion-sfu channel-id quirk, last because it damages the
	// signalling channel. The answerer's counter starts at 0, the id of the
	// offerer's signalling channel. pion opens it anyway: the new channel
	// shares SCTP stream 0 with the answerer's signalling channel, the
	// offerer rejects the second DCEP OPEN on that stream (so no channel
	// appears there), and from then on the two channel objects on the
	// answerer race for what arrives on stream 0.
	ansCtl.handle(command{Cmd: "create_data_channel", Label: "dc-collide"})
	collide := recA.waitN(1, 2*time.Second, ofType("data_channel", field("label", "dc-collide"), field("id", 0)))
	t.check(len(collide) == 1, "answerer's counter-numbered channel opened locally on stream 0")
	time.Sleep(300 * time.Millisecond)
	t.check(len(recO.all(ofType("data_channel", field("label", "dc-collide")))) == 0, "offerer never sees the colliding channel")
	const probes = 20
	for i := 0; i < probes; i++ {
		offCtl.handle(command{Cmd: "emit", Event: "after-collision", Payload: []byte{byte(i)}})
	}
	isProbe := func(e event) bool {
		if e.Type() == "request" {
			return e.Str("event") == "after-collision"
		}
		data, _ := e.Get("data").([]byte)
		return e.Type() == "dc_message" && e.Str("label") == "dc-collide" && bytes.Contains(data, []byte(`"after-collision"`))
	}
	got := recA.waitN(probes, 3*time.Second, isProbe)
	stolen := len(recA.all(func(e event) bool { return isProbe(e) && e.Type() == "dc_message" }))
	t.check(len(got) == probes, "every probe read by one of the two channels on stream 0 (%d of %d)", len(got), probes)
	t.note("quirkAnswererChannel0", map[string]any{"opened": len(collide) == 1, "probes": probes, "stolenFromSignalling": stolen})

	// 8. Closing one side is noticed by the other only through ICE
	// (disconnected after ~5 s of silence), which closes it too.
	ansCtl.handle(command{Cmd: "close"})
	closedA := recA.waitN(1, 5*time.Second, ofType("closed"))
	t.check(len(closedA) == 1 && closedA[0].Str("reason") == "closed by command", "answer closed by command: %v", closedA)
	closedO := recO.waitN(1, 20*time.Second, ofType("closed"))
	t.check(len(closedO) == 1 && strings.HasPrefix(closedO[0].Str("reason"), "ice "), "offer closed itself on ICE: %v", closedO)
	if len(closedO) == 1 {
		t.note("offerClosedBy", closedO[0].Str("reason"))
	}
	return t.finish(offCtl, ansCtl)
}

func (t *selfTest) finish(ctls ...*controller) int {
	for _, c := range ctls {
		c.peer.Close("self-test done")
	}
	t.note("failures", append([]string{}, t.failures...))
	kv := append([]any{"ok", len(t.failures) == 0}, t.summary...)
	fmt.Println(newEvent("summary", kv...).String())
	if len(t.failures) > 0 {
		return 1
	}
	return 0
}

// dumpCaptures writes what the peers put on the wire: offer.json and
// answer.json (the out-of-band signals), track-signal.json (the decoded
// payload of the offerer's first ion_relay_request, as the answerer received
// it) and envelopes.jsonl (every signalling message, as received).
func dumpCaptures(dir string, offer, answer []byte, recA *recorder, rawMu *sync.Mutex, raw *[][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{"offer.json": offer, "answer.json": answer}
	reqs := recA.all(ofType("request", field("event", signalerRequestEvent)))
	if len(reqs) == 0 {
		return fmt.Errorf("no %s captured", signalerRequestEvent)
	}
	files["track-signal.json"], _ = reqs[0].Get("payload").([]byte)
	rawMu.Lock()
	var lines bytes.Buffer
	for _, r := range *raw {
		lines.Write(r)
		lines.WriteByte('\n')
	}
	rawMu.Unlock()
	files["envelopes.jsonl"] = lines.Bytes()
	for name, data := range files {
		if !json.Valid(data) && name != "envelopes.jsonl" {
			return fmt.Errorf("%s is not valid JSON", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "captures written to %s\n", dir)
	return nil
}
