// Command relay-go-peer is an interop test peer that behaves on the wire like
// ion-sfu's Go relay (pkg/relay, final master) on pion/webrtc v3. A test
// drives it over stdin/stdout with line-delimited JSON; see README.md next to
// build.sh for the control protocol.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"os"
	"sync"
	"time"
)

func main() {
	role := flag.String("role", "", "offer or answer")
	peerID := flag.String("peer-id", "relay-go-peer", "peer id sent beside the offer (offer role)")
	sessionID := flag.String("session-id", "test-session", "session id sent beside the offer (offer role)")
	flipDTLS := flag.Bool("flip-dtls", false, "take the wrong DTLS role (offerer client, answerer server) while advertising the same signal")
	selfTest := flag.Bool("self-test", false, "run an offerer and an answerer against each other in-process and print a summary")
	dumpDir := flag.String("dump-dir", "", "with -self-test: write the captured offer, answer, track signal and envelopes to this directory")
	bench := registerBenchFlags()
	flag.Parse()

	// Go 1.19's global math/rand starts from a fixed seed.
	rand.Seed(time.Now().UnixNano())

	if *selfTest {
		os.Exit(runSelfTest(*dumpDir))
	}
	if *bench.enabled {
		os.Exit(runBench(bench))
	}
	switch *role {
	case "offer", "answer":
	default:
		fmt.Fprintln(os.Stderr, "usage: relay-go-peer -role offer|answer [-peer-id P] [-session-id S] [-flip-dtls] | -self-test [-dump-dir D] | -bench [-bench-quick] [-bench-window S] [-bench-connects N] [-bench-requests N] [-bench-pairs N] [-bench-only LIST]")
		os.Exit(2)
	}
	os.Exit(runCLI(*role == "offer", peerMeta{PeerID: *peerID, SessionID: *sessionID}, *flipDTLS))
}

// signalLine is the out-of-band exchange on stdin/stdout. The signal is
// embedded as a JSON object.
type signalLine struct {
	Type      string          `json:"type"`
	PeerID    string          `json:"peerId,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Signal    json.RawMessage `json:"signal"`
}

// signalBytes accepts the signal as an object (the documented form) or, to be
// lenient, as a string holding the JSON.
func signalBytes(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New("missing signal")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	}
	return raw, nil
}

// readLine returns the next non-empty line without its newline.
func readLine(in *bufio.Reader) ([]byte, error) {
	for {
		line, err := in.ReadBytes('\n')
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			return line, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func readSignalLine(in *bufio.Reader, want string) (signalLine, []byte, error) {
	var msg signalLine
	line, err := readLine(in)
	if err != nil {
		return msg, nil, fmt.Errorf("reading the %s from stdin: %w", want, err)
	}
	if err = json.Unmarshal(line, &msg); err != nil {
		return msg, nil, fmt.Errorf("parsing the %s line: %w", want, err)
	}
	if msg.Type != want {
		return msg, nil, fmt.Errorf("expected a %q line, got type %q", want, msg.Type)
	}
	sig, err := signalBytes(msg.Signal)
	return msg, sig, err
}

// lineSink writes events to stdout and drops everything after "closed", so
// that "closed" is always the last line a test sees.
// stdout carries nothing else (pion's and our logs go to stderr), and the
// mutex keeps lines whole when several goroutines report at once.
type lineSink struct {
	mu   sync.Mutex
	done bool
}

func (s *lineSink) emit(e event) {
	line := e.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = e.Type() == "closed"
	fmt.Fprintln(os.Stdout, line)
}

func runCLI(offerer bool, meta peerMeta, flipDTLS bool) int {
	roleName := "answer"
	if offerer {
		roleName = "offer"
	}
	logger := log.New(os.Stderr, "relay-go-peer["+roleName+"] ", log.Lmicroseconds)
	sink := &lineSink{}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	// Failures before a peer exists still end with "closed", like every
	// other way this program ends.
	fail := func(err error) int {
		sink.emit(newEvent("error", "error", err.Error()))
		sink.emit(newEvent("closed", "reason", "start failed: "+err.Error()))
		return 1
	}

	// The command loop starts as soon as this side has both signals, so
	// that stdin EOF or "close" also ends a connection that never comes up
	// (e.g. DTLS waiting forever with -flip-dtls).
	var ctl *controller
	var startCommands sync.Once
	commands := func() {
		startCommands.Do(func() { go commandLoop(in, ctl, sink) })
	}
	if offerer {
		var err error
		if ctl, err = newController(true, meta, flipDTLS, sink.emit, logger, nil); err != nil {
			return fail(err)
		}
		err = ctl.peer.Offer(func(meta peerMeta, offer []byte) ([]byte, error) {
			sink.emit(newEvent("offer", "peerId", meta.PeerID, "sessionId", meta.SessionID, "signal", json.RawMessage(offer)))
			_, answer, err := readSignalLine(in, "answer")
			if err != nil {
				return nil, err
			}
			ctl.markSignalled()
			commands()
			return answer, nil
		})
		if err != nil {
			ctl.failStart(err)
			<-ctl.closed
			return 1
		}
	} else {
		msg, offer, err := readSignalLine(in, "offer")
		if err != nil {
			return fail(err)
		}
		logger.Printf("offer from peer %q, session %q", msg.PeerID, msg.SessionID)
		if ctl, err = newController(false, peerMeta{PeerID: msg.PeerID, SessionID: msg.SessionID}, flipDTLS, sink.emit, logger, nil); err != nil {
			return fail(err)
		}
		ctl.markSignalled()
		answer, err := ctl.peer.Answer(offer)
		if err != nil {
			ctl.failStart(err)
			<-ctl.closed
			return 1
		}
		sink.emit(newEvent("answer", "signal", json.RawMessage(answer)))
		commands()
	}

	<-ctl.closed
	ctl.mu.Lock()
	failed := ctl.closeErr
	ctl.mu.Unlock()
	if failed {
		return 1
	}
	return 0
}

// commandLoop handles one command per stdin line until EOF, which closes the
// peer like a "close" command.
func commandLoop(in *bufio.Reader, ctl *controller, sink *lineSink) {
	for {
		line, err := readLine(in)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				sink.emit(newEvent("error", "error", "reading stdin: "+err.Error()))
			}
			ctl.peer.Close("stdin closed")
			return
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			sink.emit(newEvent("error", "error", "bad command line: "+err.Error()))
			continue
		}
		ctl.handle(cmd)
	}
}
