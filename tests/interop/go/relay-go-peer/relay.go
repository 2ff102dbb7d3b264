package main

// relay.go reproduces the behaviour of ion-sfu's relay peer (pkg/relay of
// ion-sfu's final master) on pion/webrtc v3's ORTC objects. It is written for
// this test peer, not taken from ion-sfu; where ion-sfu does something
// surprising that the remote side can observe, this file does the same and
// says so in a comment starting with "ion-sfu quirk".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

const (
	signalerLabel        = "ion_sfu_relay_signaler"
	signalerRequestEvent = "ion_relay_request"
	// ion-sfu gives the remote this long to answer an ion_relay_request.
	addTrackTimeout = 2 * time.Second
)

var (
	errNotReady         = errors.New("relay Peer is not ready")
	errSignalDone       = errors.New("relay Peer signal already called")
	errSignalDCNotReady = errors.New("relay Peer data channel is not ready")
)

// signal is both the out-of-band offer/answer and the payload of an
// ion_relay_request. It must marshal exactly like ion-sfu's struct of the same
// role: same keys, same pion types. Note that omitempty has no effect on the
// two struct-typed fields, which is why a track signal still carries an empty
// iceParameters and a dtlsParameters with "fingerprints": null.
type signal struct {
	Encodings        *webrtc.RTPCodingParameters `json:"encodings,omitempty"`
	ICECandidates    []webrtc.ICECandidate       `json:"iceCandidates,omitempty"`
	ICEParameters    webrtc.ICEParameters        `json:"iceParameters,omitempty"`
	DTLSParameters   webrtc.DTLSParameters       `json:"dtlsParameters,omitempty"`
	SCTPCapabilities *webrtc.SCTPCapabilities    `json:"sctpCapabilities,omitempty"`
	TrackMeta        *trackMeta                  `json:"trackInfo,omitempty"`
}

// trackMeta travels as "trackInfo". RTPCodecParameters has no JSON tags in
// pion, hence the capitalised keys (MimeType, ClockRate, ...) on the wire.
type trackMeta struct {
	StreamID        string                     `json:"streamId"`
	TrackID         string                     `json:"trackId"`
	CodecParameters *webrtc.RTPCodecParameters `json:"codecParameters,omitempty"`
}

// envelope is one message on the signalling channel. A []byte payload
// marshals as standard base64, and a nil one as null.
type envelope struct {
	ID      uint64 `json:"id"`
	IsReply bool   `json:"reply"`
	Event   string `json:"event"`
	Payload []byte `json:"payload"`
}

type peerMeta struct {
	PeerID    string `json:"peerId"`
	SessionID string `json:"sessionId"`
}

// peerHandlers are the application's callbacks. They are fixed at
// construction, before any traffic, so they need no locking.
type peerHandlers struct {
	onReady       func()
	onClose       func(reason string)
	onRequest     func(event string, msg inboundMessage)
	onDataChannel func(dc *webrtc.DataChannel)
	onTrack       func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver, meta *trackMeta, enc webrtc.RTPCodingParameters)
	// Not part of ion-sfu's API; lets the test tooling see every raw
	// signalling message and every failure ion-sfu would only log.
	onRawMessage   func(raw []byte)
	onError        func(err error)
	onChannelError func(label string, err error)
	onChannelClose func(label string)
}

type relayPeer struct {
	// mu is ion-sfu's peer lock. AddTrack holds it for the whole
	// ion_relay_request round trip and an inbound ion_relay_request takes it
	// too, inside the data channel's read loop (see AddTrack).
	mu sync.Mutex
	// pendingMu guards pending (ion-sfu's second mutex).
	pendingMu sync.Mutex
	pending   map[uint64]chan []byte

	// listMu guards the sender/receiver lists so Close does not have to wait
	// for mu (ion-sfu reads them unlocked).
	listMu    sync.Mutex
	senders   []*webrtc.RTPSender
	receivers []*webrtc.RTPReceiver

	randMu sync.Mutex
	rnd    *rand.Rand

	me       *webrtc.MediaEngine
	api      *webrtc.API
	gatherer *webrtc.ICEGatherer
	ice      *webrtc.ICETransport
	dtls     *webrtc.DTLSTransport
	sctp     *webrtc.SCTPTransport
	role     webrtc.ICERole

	meta   peerMeta
	h      peerHandlers
	logger *log.Logger

	ready       bool                               // ICE, DTLS and SCTP are up (guarded by mu)
	signalingDC atomic.Pointer[webrtc.DataChannel] // set by Offer or on the remote's open
	dcIndex     uint16                             // next DCEP stream id (guarded by mu)

	closing   atomic.Bool // Close has begun; channel teardown noise is expected
	closeOnce sync.Once
}

func newRelayPeer(meta peerMeta, api *webrtc.API, me *webrtc.MediaEngine, h peerHandlers, logger *log.Logger) (*relayPeer, error) {
	gatherer, err := api.NewICEGatherer(webrtc.ICEGatherOptions{})
	if err != nil {
		return nil, err
	}
	ice := api.NewICETransport(gatherer)
	dtls, err := api.NewDTLSTransport(ice, nil)
	if err != nil {
		return nil, err
	}
	p := &relayPeer{
		pending:  make(map[uint64]chan []byte),
		rnd:      rand.New(rand.NewSource(time.Now().UnixNano())),
		me:       me,
		api:      api,
		gatherer: gatherer,
		ice:      ice,
		dtls:     dtls,
		sctp:     api.NewSCTPTransport(dtls),
		meta:     meta,
		h:        h,
		logger:   logger,
	}

	p.sctp.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() == signalerLabel {
			// Matched by label only: any stream id and any opener are
			// accepted. Handlers are registered here, before pion
			// delivers the open, so no early message is lost.
			p.signalingDC.Store(dc)
			dc.OnMessage(p.handleMessage)
			dc.OnOpen(p.fireReady)
			p.watchSignalingDC(dc)
			return
		}
		if p.h.onDataChannel != nil {
			p.h.onDataChannel(dc)
		}
	})

	ice.OnConnectionStateChange(func(state webrtc.ICETransportState) {
		p.logger.Printf("ICE transport state: %s", state)
		// ion-sfu closes the whole relay as soon as ICE says disconnected
		// (pion: ~5 s without traffic) or failed; it never waits for a
		// reconnect. Close runs on its own goroutine because it stops the
		// ICE transport whose callback we are in.
		if state == webrtc.ICETransportStateDisconnected || state == webrtc.ICETransportStateFailed {
			// Not ion-sfu: say why a connection that never came up ends,
			// before Close prints "closed" (DTLS Start's own error comes
			// only after the transports are stopped, too late to print).
			if ds := p.dtls.State(); (ds == webrtc.DTLSTransportStateNew || ds == webrtc.DTLSTransportStateConnecting) && !p.closing.Load() {
				p.reportError(fmt.Errorf("dtls never connected (state %s) when ICE went %s", ds, state))
			}
			go p.Close("ice " + state.String())
		}
	})
	dtls.OnStateChange(func(state webrtc.DTLSTransportState) {
		p.logger.Printf("DTLS transport state: %s", state)
	})
	p.sctp.OnError(func(err error) { p.reportError(fmt.Errorf("sctp: %w", err)) })
	return p, nil
}

func (p *relayPeer) reportError(err error) {
	p.logger.Printf("error: %v", err)
	if p.h.onError != nil {
		p.h.onError(err)
	}
}

func (p *relayPeer) fireReady() {
	if p.h.onReady != nil {
		p.h.onReady()
	}
}

func (p *relayPeer) nextID() uint64 {
	p.randMu.Lock()
	defer p.randMu.Unlock()
	return p.rnd.Uint64()
}

// gatherLocal gathers every candidate before returning (no trickle), then
// describes this side as a signal.
func (p *relayPeer) gatherLocal() (*signal, error) {
	if p.gatherer.State() != webrtc.ICEGathererStateNew {
		return nil, errSignalDone
	}
	done := make(chan struct{})
	p.gatherer.OnLocalCandidate(func(c *webrtc.ICECandidate) {
		if c == nil { // end of candidates
			close(done)
		}
	})
	if err := p.gatherer.Gather(); err != nil {
		return nil, err
	}
	<-done

	var (
		ls  signal
		err error
	)
	if ls.ICECandidates, err = p.gatherer.GetLocalCandidates(); err != nil {
		return nil, err
	}
	if ls.ICEParameters, err = p.gatherer.GetLocalParameters(); err != nil {
		return nil, err
	}
	// pion always reports role "auto" (1) here, whatever role DTLS will
	// really take; the roles follow from the ICE roles (see start).
	if ls.DTLSParameters, err = p.dtls.GetLocalParameters(); err != nil {
		return nil, err
	}
	caps := p.sctp.GetCapabilities() // maxMessageSize 0
	ls.SCTPCapabilities = &caps
	return &ls, nil
}

// Offer performs the offering side of the single out-of-band round trip:
// signalFn carries our offer to the remote and returns its answer. Returns
// once ICE, DTLS and SCTP are up and the signalling channel has been opened;
// readiness is reported through onReady.
func (p *relayPeer) Offer(signalFn func(meta peerMeta, offer []byte) ([]byte, error)) error {
	ls, err := p.gatherLocal()
	if err != nil {
		return err
	}
	p.role = webrtc.ICERoleControlling
	offer, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	answer, err := signalFn(p.meta, offer)
	if err != nil {
		return err
	}
	var rs signal
	if err = json.Unmarshal(answer, &rs); err != nil {
		return fmt.Errorf("parse answer: %w", err)
	}
	if err = p.start(&rs); err != nil {
		return err
	}

	p.mu.Lock()
	dc, err := p.createDataChannel(signalerLabel, nil)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("open signalling channel: %w", err)
	}
	p.signalingDC.Store(dc)
	// ion-sfu quirk: pion opens the channel (sends DCEP OPEN) inside
	// NewDataChannel without waiting for the ACK, so OnOpen fires at once;
	// the message handler is attached only after OnOpen, as ion-sfu does.
	dc.OnOpen(p.fireReady)
	dc.OnMessage(p.handleMessage)
	p.watchSignalingDC(dc)
	return nil
}

// watchSignalingDC only observes: ion-sfu registers no error or close
// handler, but the tests want to see the channel die (e.g. on a message over
// 65,535 bytes).
func (p *relayPeer) watchSignalingDC(dc *webrtc.DataChannel) {
	dc.OnError(func(err error) {
		if p.h.onChannelError != nil {
			p.h.onChannelError(dc.Label(), err)
		}
	})
	dc.OnClose(func() {
		if p.h.onChannelClose != nil {
			p.h.onChannelClose(dc.Label())
		}
	})
}

// Answer takes the remote offer and returns our answer at once; the
// transports are started in the background, as ion-sfu does.
func (p *relayPeer) Answer(offer []byte) ([]byte, error) {
	ls, err := p.gatherLocal()
	if err != nil {
		return nil, err
	}
	p.role = webrtc.ICERoleControlled
	var rs signal
	if err = json.Unmarshal(offer, &rs); err != nil {
		return nil, fmt.Errorf("parse offer: %w", err)
	}
	go func() {
		if err := p.start(&rs); err != nil {
			p.reportError(fmt.Errorf("start: %w", err))
			p.Close("start failed: " + err.Error())
		}
	}()
	return json.Marshal(ls)
}

// start brings up ICE, DTLS and SCTP in that order; each call blocks until
// its layer is connected (or fails).
func (p *relayPeer) start(rs *signal) error {
	if err := p.ice.SetRemoteCandidates(rs.ICECandidates); err != nil {
		return fmt.Errorf("ice remote candidates: %w", err)
	}
	role := p.role
	if err := p.ice.Start(p.gatherer, rs.ICEParameters, &role); err != nil {
		return fmt.Errorf("ice start: %w", err)
	}
	// Both sides advertise DTLS role "auto", so pion picks server on the
	// ICE-controlling side (the offerer) and client on the controlled side,
	// unless the SettingEngine forces a role (-flip-dtls).
	if err := p.dtls.Start(rs.DTLSParameters); err != nil {
		return fmt.Errorf("dtls start: %w", err)
	}
	// pion's SCTPTransport.Start always runs an SCTP client, so two Go
	// peers do a simultaneous open; the remote's maxMessageSize is ignored.
	if rs.SCTPCapabilities != nil {
		if err := p.sctp.Start(*rs.SCTPCapabilities); err != nil {
			return fmt.Errorf("sctp start: %w", err)
		}
	}
	p.mu.Lock()
	p.ready = true
	p.mu.Unlock()
	return nil
}

// CreateDataChannel opens an application data channel (DCEP, ordered,
// reliable). explicitID, when non-nil, bypasses ion-sfu's id counter: it is a
// test-only extension for choosing a free stream id.
func (p *relayPeer) CreateDataChannel(label string, explicitID *uint16) (*webrtc.DataChannel, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, errNotReady
	}
	return p.createDataChannel(label, explicitID)
}

// createDataChannel must be called with mu held.
func (p *relayPeer) createDataChannel(label string, explicitID *uint16) (*webrtc.DataChannel, error) {
	id := p.dcIndex
	if explicitID != nil {
		id = *explicitID
	} else {
		// ion-sfu quirk: its counter is advanced with "= +1", i.e. set to
		// 1, not incremented. Channel ids go 0, 1, 1, 1, ... on each side
		// independently (no even/odd split by DTLS role): the offerer's
		// signalling channel takes 0, so a Go answerer's first channel
		// collides with it, and any third channel collides with the second.
		p.dcIndex = 1
	}
	return p.api.NewDataChannel(p.sctp, &webrtc.DataChannelParameters{
		Label:   label,
		ID:      &id,
		Ordered: true,
	})
}

// kindOf derives the media kind from the MIME prefix, as ion-sfu does.
func kindOf(mime string) webrtc.RTPCodecType {
	switch {
	case strings.HasPrefix(mime, "audio/"):
		return webrtc.RTPCodecTypeAudio
	case strings.HasPrefix(mime, "video/"):
		return webrtc.RTPCodecTypeVideo
	}
	return webrtc.RTPCodecType(0)
}

// AddTrack announces a local track with an ion_relay_request and, once the
// remote replied, starts the RTPSender.
//
// ssrc 0 means "the sender's own SSRC", which is what ion-sfu signals. A
// non-zero ssrc is a test extension; the caller must then read RTCP for it
// elsewhere, because pion routes a sender's RTCP by the SSRC it drew itself.
//
// onSent is called once the request has been handed to the channel (see
// Request); it is not called when AddTrack fails before that.
func (p *relayPeer) AddTrack(local webrtc.TrackLocal, codec webrtc.RTPCodecParameters, ssrc webrtc.SSRC,
	onSent func(id uint64, err error)) (*webrtc.RTPSender, webrtc.SSRC, error) {
	// ion-sfu quirk: the peer lock is held until the reply arrives or the
	// 2 s timeout expires. An inbound ion_relay_request needs the same lock
	// and is handled inside the channel's read loop, so it stalls every
	// later inbound message (our reply included) meanwhile. Two peers adding
	// tracks at the same moment therefore both time out.
	p.mu.Lock()
	defer p.mu.Unlock()

	sender, err := p.api.NewRTPSender(local, p.dtls)
	if err != nil {
		return nil, 0, err
	}
	if err = p.me.RegisterCodec(codec, local.Kind()); err != nil {
		return nil, 0, err
	}
	if ssrc == 0 {
		ssrc = sender.GetParameters().Encodings[0].SSRC
	}
	ts := &signal{
		Encodings: &webrtc.RTPCodingParameters{SSRC: ssrc, PayloadType: codec.PayloadType},
		TrackMeta: &trackMeta{StreamID: local.StreamID(), TrackID: local.ID(), CodecParameters: &codec},
	}
	payload, err := json.Marshal(ts)
	if err != nil {
		return nil, 0, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), addTrackTimeout)
	defer cancel()
	if _, err = p.Request(ctx, signalerRequestEvent, payload, onSent); err != nil {
		return nil, ssrc, err
	}

	err = sender.Send(webrtc.RTPSendParameters{
		RTPParameters: webrtc.RTPParameters{Codecs: []webrtc.RTPCodecParameters{codec}},
		Encodings: []webrtc.RTPEncodingParameters{{
			RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: ssrc, PayloadType: codec.PayloadType},
		}},
	})
	if err != nil {
		// ion-sfu only logs this and still returns the sender.
		p.reportError(fmt.Errorf("RTPSender.Send: %w", err))
	}
	p.listMu.Lock()
	p.senders = append(p.senders, sender)
	p.listMu.Unlock()
	return sender, ssrc, nil
}

// receive sets up reception of a track announced by an ion_relay_request.
// Called with mu held.
func (p *relayPeer) receive(s *signal) error {
	if s.TrackMeta == nil || s.TrackMeta.CodecParameters == nil || s.Encodings == nil {
		// ion-sfu would dereference nil here and crash.
		return errors.New("ion_relay_request without encodings or trackInfo.codecParameters")
	}
	codec := *s.TrackMeta.CodecParameters
	kind := kindOf(codec.MimeType)
	// The payload type must be known to pion's MediaEngine or every packet
	// read fails, so the announced codec is registered first.
	if err := p.me.RegisterCodec(codec, kind); err != nil {
		return fmt.Errorf("register codec: %w", err)
	}
	recv, err := p.api.NewRTPReceiver(kind, p.dtls)
	if err != nil {
		return err
	}
	err = recv.Receive(webrtc.RTPReceiveParameters{Encodings: []webrtc.RTPDecodingParameters{{
		RTPCodingParameters: webrtc.RTPCodingParameters{
			RID:         s.Encodings.RID,
			SSRC:        s.Encodings.SSRC,
			PayloadType: s.Encodings.PayloadType,
		},
	}}})
	if err != nil {
		return fmt.Errorf("RTPReceiver.Receive: %w", err)
	}
	recv.SetRTPParameters(webrtc.RTPParameters{Codecs: []webrtc.RTPCodecParameters{codec}})

	if p.h.onTrack != nil {
		p.h.onTrack(recv.Track(), recv, s.TrackMeta, *s.Encodings)
	}
	p.listMu.Lock()
	p.receivers = append(p.receivers, recv)
	p.listMu.Unlock()
	return nil
}

// adoptReceiver makes Close stop a receiver that the relay did not create
// itself (the test peer's RTCP taps).
func (p *relayPeer) adoptReceiver(r *webrtc.RTPReceiver) {
	p.listMu.Lock()
	p.receivers = append(p.receivers, r)
	p.listMu.Unlock()
}

func (p *relayPeer) send(env envelope) error {
	dc := p.signalingDC.Load()
	if dc == nil {
		return errSignalDCNotReady
	}
	msg, err := json.Marshal(env)
	if err != nil {
		return err
	}
	// One binary message (PPID "WebRTC Binary") per envelope.
	return dc.Send(msg)
}

// Emit sends a message that expects no reply. On the wire it is identical to
// a request.
func (p *relayPeer) Emit(event string, payload []byte) (uint64, error) {
	id := p.nextID()
	return id, p.send(envelope{ID: id, Event: event, Payload: payload})
}

// Request sends a message and waits for the reply with the same id. onSent,
// if set, is called exactly once, right after the send, with its outcome.
func (p *relayPeer) Request(ctx context.Context, event string, payload []byte, onSent func(id uint64, err error)) ([]byte, error) {
	id := p.nextID()
	resp := make(chan []byte, 1)
	// Deliberate deviation: ion-sfu registers the pending request only
	// after Send returns, so a very fast reply can be dropped. Registering
	// first removes that race without changing anything on the wire.
	p.pendingMu.Lock()
	p.pending[id] = resp
	p.pendingMu.Unlock()
	defer func() {
		p.pendingMu.Lock()
		delete(p.pending, id)
		p.pendingMu.Unlock()
	}()

	err := p.send(envelope{ID: id, Event: event, Payload: payload})
	if onSent != nil {
		onSent(id, err)
	}
	if err != nil {
		return nil, err
	}
	select {
	case r := <-resp:
		return r, nil
	case <-ctx.Done():
		// The protocol has no error reply: silence ends in a timeout.
		return nil, ctx.Err()
	}
}

func (p *relayPeer) reply(id uint64, event string, payload []byte) error {
	return p.send(envelope{ID: id, IsReply: true, Event: event, Payload: payload})
}

// handleMessage runs on pion's data channel read loop, which reads into a
// 65,535-byte buffer: a larger message kills the channel (pion reports an
// error and closes it) before it ever gets here.
func (p *relayPeer) handleMessage(msg webrtc.DataChannelMessage) {
	if p.h.onRawMessage != nil {
		p.h.onRawMessage(msg.Data)
	}
	var env envelope
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		// ion-sfu logs and drops undecodable messages.
		p.reportError(fmt.Errorf("decode signalling message: %w", err))
		return
	}

	switch {
	case env.Event == signalerRequestEvent && !env.IsReply:
		if p.h.onRequest != nil {
			// ion-sfu keeps this event to itself; the test peer also
			// shows it to the application (for printing only).
			p.h.onRequest(env.Event, inboundMessage{p: p, id: env.ID, event: env.Event, payload: env.Payload, internal: true})
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		var ts signal
		if err := json.Unmarshal(env.Payload, &ts); err != nil {
			p.reportError(fmt.Errorf("decode %s payload: %w", signalerRequestEvent, err))
			return
		}
		if err := p.receive(&ts); err != nil {
			// No reply: the sender times out after 2 s.
			p.reportError(fmt.Errorf("receive track: %w", err))
			return
		}
		if err := p.reply(env.ID, env.Event, nil); err != nil {
			p.reportError(fmt.Errorf("reply %s: %w", signalerRequestEvent, err))
		}

	case env.IsReply:
		p.pendingMu.Lock()
		ch, ok := p.pending[env.ID]
		if ok {
			ch <- env.Payload
			delete(p.pending, env.ID)
		}
		p.pendingMu.Unlock()
		if !ok {
			// Unknown or expired id: dropped silently, as ion-sfu does.
			p.logger.Printf("dropping reply with unknown id %d (%s)", env.ID, env.Event)
		}

	default:
		if p.h.onRequest != nil {
			p.h.onRequest(env.Event, inboundMessage{p: p, id: env.ID, event: env.Event, payload: env.Payload})
		}
	}
}

// WriteRTCP sends RTCP over the DTLS transport (SRTCP).
func (p *relayPeer) WriteRTCP(pkts []rtcp.Packet) error {
	_, err := p.dtls.WriteRTCP(pkts)
	return err
}

// Close stops senders, receivers, SCTP, DTLS and ICE, in ion-sfu's order, and
// reports the reason once. Nothing is announced to the remote beyond what
// pion does when stopping (DTLS close_notify); a Go peer learns about it
// through ICE timing out.
func (p *relayPeer) Close(reason string) {
	p.closeOnce.Do(func() {
		p.closing.Store(true)
		p.logger.Printf("closing: %s", reason)
		p.listMu.Lock()
		senders := append([]*webrtc.RTPSender(nil), p.senders...)
		receivers := append([]*webrtc.RTPReceiver(nil), p.receivers...)
		p.listMu.Unlock()
		var errs []string
		for _, s := range senders {
			if err := s.Stop(); err != nil {
				errs = append(errs, err.Error())
			}
		}
		for _, r := range receivers {
			if err := r.Stop(); err != nil {
				errs = append(errs, err.Error())
			}
		}
		for _, stop := range []func() error{p.sctp.Stop, p.dtls.Stop, p.ice.Stop} {
			if err := stop(); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			p.logger.Printf("errors while closing (ignored): %s", strings.Join(errs, "; "))
		}
		if p.h.onClose != nil {
			p.h.onClose(reason)
		}
	})
}

// inboundMessage is a request or emit from the remote, which the application
// may answer.
type inboundMessage struct {
	p        *relayPeer
	id       uint64
	event    string
	payload  []byte
	internal bool // ion_relay_request: answered by the relay itself
}

func (m inboundMessage) Reply(payload []byte) error { return m.p.reply(m.id, m.event, payload) }
