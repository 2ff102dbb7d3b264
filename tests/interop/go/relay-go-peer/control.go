package main

// control.go is the test-facing side: it turns relay callbacks into event
// lines and control commands into relay calls. The same code serves the
// stdin/stdout protocol and the in-process self-test.

import (
	"context"
	"fmt"
	"log"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

// command is one control line. Byte fields take standard base64 or null,
// exactly like the envelope's payload.
type command struct {
	Cmd        string  `json:"cmd"`
	Event      string  `json:"event"`
	Payload    []byte  `json:"payload"`
	TimeoutMs  int     `json:"timeoutMs"`
	Kind       string  `json:"kind"`
	SSRC       uint32  `json:"ssrc"`
	StreamID   string  `json:"streamId"`
	TrackID    string  `json:"trackId"`
	Packets    int     `json:"packets"`
	IntervalMs int     `json:"intervalMs"`
	Label      string  `json:"label"`
	ID         *uint16 `json:"id"`
	Data       []byte  `json:"data"`
}

const (
	defaultRequestTimeout = 2 * time.Second
	defaultPacketInterval = 20 * time.Millisecond
)

type controller struct {
	peer   *relayPeer
	out    func(event)
	logger *log.Logger

	mu        sync.Mutex
	signalled time.Time // both signals known; "ready" reports the time since
	channels  map[string]*webrtc.DataChannel
	inbound   []*inboundTrack
	closeErr  bool          // closed because start failed: exit status 1
	closed    chan struct{} // closed after the "closed" event
}

// newController builds the pion API and the relay peer for one side.
// rawHook, if set, sees every raw message on the signalling channel.
func newController(offerer bool, meta peerMeta, flipDTLS bool, out func(event), logger *log.Logger,
	rawHook func([]byte)) (*controller, error) {
	api, me, err := newAPI(offerer, flipDTLS)
	if err != nil {
		return nil, err
	}
	c := &controller{
		out:       out,
		logger:    logger,
		signalled: time.Now(),
		channels:  make(map[string]*webrtc.DataChannel),
		closed:    make(chan struct{}),
	}
	c.peer, err = newRelayPeer(meta, api, me, peerHandlers{
		onReady:        c.onReady,
		onClose:        c.onClose,
		onRequest:      c.onRequest,
		onDataChannel:  func(dc *webrtc.DataChannel) { c.attachChannel(dc, "remote") },
		onTrack:        c.onTrack,
		onRawMessage:   rawHook,
		onError:        func(err error) { c.out(newEvent("error", "error", err.Error())) },
		onChannelError: c.onChannelError,
		onChannelClose: c.onChannelClose,
	}, logger)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// markSignalled records the moment this side knows both signals.
func (c *controller) markSignalled() {
	c.mu.Lock()
	c.signalled = time.Now()
	c.mu.Unlock()
}

func (c *controller) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// failStart closes the peer after Offer failed; the process then exits 1.
func (c *controller) failStart(err error) {
	c.mu.Lock()
	c.closeErr = true
	c.mu.Unlock()
	c.out(newEvent("error", "error", err.Error()))
	c.peer.Close("start failed: " + err.Error())
}

// --- relay callbacks ---------------------------------------------------

func (c *controller) onReady() {
	c.mu.Lock()
	elapsed := time.Since(c.signalled)
	c.mu.Unlock()
	c.out(newEvent("ready", "elapsedMs", elapsed.Milliseconds()))
}

func (c *controller) onClose(reason string) {
	c.mu.Lock()
	inbound := append([]*inboundTrack(nil), c.inbound...)
	if strings.HasPrefix(reason, "start failed") {
		c.closeErr = true
	}
	c.mu.Unlock()
	for _, t := range inbound {
		c.out(newEvent("rtp", "ssrc", uint32(t.ssrc), "count", t.count.Load(), "final", true))
	}
	c.out(newEvent("closed", "reason", reason))
	close(c.closed)
}

func (c *controller) onRequest(eventName string, msg inboundMessage) {
	c.out(newEvent("request", "id", idString(msg.id), "event", eventName, "payload", msg.payload))
	if msg.internal {
		return // ion_relay_request: the relay answers it itself
	}
	// The application decides what to answer; this test application
	// echoes "echo*" events and leaves everything else unanswered, so the
	// remote's request times out as it would against ion-sfu.
	if strings.HasPrefix(eventName, "echo") {
		if err := msg.Reply(msg.payload); err != nil {
			c.out(newEvent("error", "error", fmt.Sprintf("reply to %s %s: %v", eventName, idString(msg.id), err)))
		}
	}
}

func (c *controller) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, meta *trackMeta, enc webrtc.RTPCodingParameters) {
	t := &inboundTrack{ssrc: enc.SSRC, recv: recv}
	c.mu.Lock()
	c.inbound = append(c.inbound, t)
	c.mu.Unlock()
	c.out(newEvent("track",
		"streamId", meta.StreamID,
		"trackId", meta.TrackID,
		"ssrc", uint32(enc.SSRC),
		"payloadType", uint8(enc.PayloadType),
		"mimeType", meta.CodecParameters.MimeType))

	go t.countRTP(track, func(err error) { c.out(newEvent("error", "error", err.Error())) })
	// Drain the receiver's RTCP (sender reports, if the remote sends any)
	// so its buffer never fills.
	go func() {
		for {
			if _, _, err := recv.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-c.closed:
				return
			case <-tick.C:
				c.out(newEvent("rtp", "ssrc", uint32(t.ssrc), "count", t.count.Load()))
			}
		}
	}()
}

// Channel errors and closes are reported only while the peer is up: our own
// Close tears every channel down with errors that mean nothing to a test.
func (c *controller) onChannelError(label string, err error) {
	if !c.peer.closing.Load() {
		c.out(newEvent("dc_error", "label", label, "error", err.Error()))
	}
}

func (c *controller) onChannelClose(label string) {
	if !c.peer.closing.Load() {
		c.out(newEvent("dc_closed", "label", label))
	}
}

// attachChannel wires an application data channel (ours or the remote's) to
// the event stream.
func (c *controller) attachChannel(dc *webrtc.DataChannel, origin string) {
	label := dc.Label()
	c.mu.Lock()
	c.channels[label] = dc
	c.mu.Unlock()
	dc.OnOpen(func() {
		var id any
		if dc.ID() != nil {
			id = *dc.ID()
		}
		c.out(newEvent("data_channel", "label", label, "id", id, "origin", origin))
	})
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		c.out(newEvent("dc_message", "label", label, "len", len(m.Data), "data", m.Data, "isString", m.IsString))
	})
	dc.OnError(func(err error) { c.onChannelError(label, err) })
	dc.OnClose(func() { c.onChannelClose(label) })
}

// --- commands ------------------------------------------------------------

// handle runs one command. It returns once the command's message (if any)
// is on the wire, so commands keep their order on the wire; waiting for
// replies and sending RTP continue in the background.
func (c *controller) handle(cmd command) {
	switch cmd.Cmd {
	case "emit":
		id, err := c.peer.Emit(cmd.Event, cmd.Payload)
		if err != nil {
			c.out(newEvent("error", "error", fmt.Sprintf("emit %s: %v", cmd.Event, err)))
			return
		}
		c.out(newEvent("emit_sent", "id", idString(id), "event", cmd.Event))
	case "request":
		c.request(cmd)
	case "add_track":
		c.addTrack(cmd)
	case "pli":
		c.sendPLI(cmd.SSRC)
	case "create_data_channel":
		dc, err := c.peer.CreateDataChannel(cmd.Label, cmd.ID)
		if err != nil {
			c.out(newEvent("dc_error", "label", cmd.Label, "error", err.Error()))
			return
		}
		c.attachChannel(dc, "local")
	case "send":
		c.send(cmd.Label, cmd.Data)
	case "close":
		c.peer.Close("closed by command")
	default:
		c.out(newEvent("error", "error", fmt.Sprintf("unknown command %q", cmd.Cmd)))
	}
}

// onceSignal returns a channel and a function that closes it at most once.
func onceSignal() (chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}

func (c *controller) request(cmd command) {
	timeout := defaultRequestTimeout
	if cmd.TimeoutMs > 0 {
		timeout = time.Duration(cmd.TimeoutMs) * time.Millisecond
	}
	sent, markSent := onceSignal()
	go func() {
		defer markSent()
		var reqID string
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		resp, err := c.peer.Request(ctx, cmd.Event, cmd.Payload, func(id uint64, err error) {
			reqID = idString(id)
			if err == nil {
				c.out(newEvent("request_sent", "id", reqID, "event", cmd.Event))
			}
			markSent()
		})
		if err != nil {
			c.out(newEvent("request_failed", "id", reqID, "event", cmd.Event, "reason", err.Error()))
			return
		}
		c.out(newEvent("reply", "id", reqID, "event", cmd.Event, "payload", resp))
	}()
	<-sent
}

func (c *controller) addTrack(cmd command) {
	codec, err := codecForKind(cmd.Kind)
	if err != nil {
		c.out(newEvent("error", "error", "add_track: "+err.Error()))
		return
	}
	track, err := webrtc.NewTrackLocalStaticRTP(codec.RTPCodecCapability, cmd.TrackID, cmd.StreamID)
	if err != nil {
		c.out(newEvent("error", "error", "add_track: "+err.Error()))
		return
	}
	interval := defaultPacketInterval
	if cmd.IntervalMs > 0 {
		interval = time.Duration(cmd.IntervalMs) * time.Millisecond
	}

	sent, markSent := onceSignal()
	go func() {
		defer markSent()
		var reqID string
		sender, ssrc, err := c.peer.AddTrack(track, codec, webrtc.SSRC(cmd.SSRC), func(id uint64, err error) {
			reqID = idString(id)
			if err == nil {
				c.out(newEvent("request_sent", "id", reqID, "event", signalerRequestEvent))
			}
			markSent()
		})
		if err != nil {
			c.out(newEvent("request_failed", "id", reqID, "event", signalerRequestEvent,
				"reason", err.Error(), "trackId", cmd.TrackID))
			return
		}
		c.out(newEvent("track_added",
			"trackId", cmd.TrackID,
			"streamId", cmd.StreamID,
			"ssrc", uint32(ssrc),
			"payloadType", uint8(codec.PayloadType),
			"mimeType", codec.MimeType,
			"id", reqID))
		c.watchPLI(sender, ssrc, cmd.SSRC != 0, codec)
		n, err := sendPackets(track, codec, cmd.Packets, interval, c.closed)
		if err != nil && !c.isClosed() {
			c.out(newEvent("error", "error", fmt.Sprintf("rtp on ssrc %d: %v", ssrc, err)))
		}
		c.out(newEvent("rtp_sent", "ssrc", uint32(ssrc), "count", n))
	}()
	<-sent
}

// watchPLI reports PLIs that the remote sends for one of our tracks.
//
// pion routes RTCP to a sender by the SSRC the sender drew for itself, which
// is the SSRC ion-sfu signals. When the test chose another SSRC, a receiver
// set up on our own SSRC serves as the RTCP tap instead. It also keeps pion's
// SRTCP demuxer from meeting an unknown SSRC, which (with no PeerConnection
// to accept new streams) would stall all further RTCP on this transport.
func (c *controller) watchPLI(sender *webrtc.RTPSender, ssrc webrtc.SSRC, explicit bool, codec webrtc.RTPCodecParameters) {
	report := func(media uint32) { c.out(newEvent("pli", "ssrc", media)) }
	if !explicit {
		go readPLIs(func() ([]rtcp.Packet, error) {
			pkts, _, err := sender.ReadRTCP()
			return pkts, err
		}, report)
		return
	}
	tap, err := c.peer.api.NewRTPReceiver(kindOf(codec.MimeType), c.peer.dtls)
	if err == nil {
		err = tap.Receive(webrtc.RTPReceiveParameters{Encodings: []webrtc.RTPDecodingParameters{{
			RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: ssrc},
		}}})
	}
	if err != nil {
		c.out(newEvent("error", "error", fmt.Sprintf("rtcp tap for ssrc %d: %v", ssrc, err)))
		return
	}
	c.peer.adoptReceiver(tap)
	go readPLIs(func() ([]rtcp.Packet, error) {
		pkts, _, err := tap.ReadRTCP()
		return pkts, err
	}, report)
}

func (c *controller) sendPLI(ssrc uint32) {
	c.mu.Lock()
	var target *inboundTrack
	for _, t := range c.inbound {
		if uint32(t.ssrc) == ssrc {
			target = t
		}
	}
	c.mu.Unlock()
	if target == nil {
		c.out(newEvent("error", "error", fmt.Sprintf("pli: no remote track with ssrc %d", ssrc)))
		return
	}
	pli := &rtcp.PictureLossIndication{SenderSSRC: rand.Uint32(), MediaSSRC: ssrc}
	if _, err := target.recv.Transport().WriteRTCP([]rtcp.Packet{pli}); err != nil {
		c.out(newEvent("error", "error", fmt.Sprintf("pli on ssrc %d: %v", ssrc, err)))
	}
}

func (c *controller) send(label string, data []byte) {
	var dc *webrtc.DataChannel
	if label == signalerLabel {
		// Raw access to the signalling channel, for tests that inject
		// malformed or oversized messages.
		dc = c.peer.signalingDC.Load()
	} else {
		c.mu.Lock()
		dc = c.channels[label]
		c.mu.Unlock()
	}
	if dc == nil {
		c.out(newEvent("dc_error", "label", label, "error", "no such data channel"))
		return
	}
	if err := dc.Send(data); err != nil {
		c.out(newEvent("dc_error", "label", label, "error", err.Error()))
	}
}
