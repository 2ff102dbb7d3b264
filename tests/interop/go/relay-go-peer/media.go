package main

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// The two codecs the test peer sends, with the parameters pion's
// RegisterDefaultCodecs uses: an ion-sfu relay forwards its clients' codecs
// as negotiated, and pion-based clients negotiate exactly these. The VP8
// feedback list is what the captured ion-sfu track signal carries. Opus has no
// feedback, so its RTCPFeedback marshals as null on the wire.
var (
	vp8Codec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:  webrtc.MimeTypeVP8,
			ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{
				{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"},
				{Type: "nack"}, {Type: "nack", Parameter: "pli"},
			},
		},
		PayloadType: 96,
	}
	opusCodec = webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:    webrtc.MimeTypeOpus,
			ClockRate:   48000,
			Channels:    2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: 111,
	}
)

const dummyPayloadSize = 200

// newAPI builds the pion API for one peer: ORTC only, no interceptors (so no
// NACK responder, no sender/receiver reports, no TWCC), loopback-only UDP4
// host candidates, and the two codecs above.
func newAPI(offerer, flipDTLS bool) (*webrtc.API, *webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range []struct {
		codec webrtc.RTPCodecParameters
		kind  webrtc.RTPCodecType
	}{{vp8Codec, webrtc.RTPCodecTypeVideo}, {opusCodec, webrtc.RTPCodecTypeAudio}} {
		if err := me.RegisterCodec(c.codec, c.kind); err != nil {
			return nil, nil, err
		}
	}

	var se webrtc.SettingEngine
	// pion's default logger writes to stdout, which belongs to the control
	// protocol.
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = os.Stderr
	se.LoggerFactory = lf
	// Tests run on loopback only: pion skips loopback interfaces unless told
	// otherwise, and the filter keeps every other address out of the signal.
	loopback := net.IPv4(127, 0, 0, 1)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(loopback) })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if flipDTLS {
		// Both sides still advertise "auto"; this only overrides pion's
		// choice (server when ICE-controlling, client otherwise), which is
		// what a negative test needs: the same JSON with wrong roles.
		role := webrtc.DTLSRoleServer
		if offerer {
			role = webrtc.DTLSRoleClient
		}
		if err := se.SetAnsweringDTLSRole(role); err != nil {
			return nil, nil, err
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)), me, nil
}

func codecForKind(kind string) (webrtc.RTPCodecParameters, error) {
	switch kind {
	case "video":
		return vp8Codec, nil
	case "audio":
		return opusCodec, nil
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("unknown kind %q (want video or audio)", kind)
}

// sendPackets writes n RTP packets with increasing sequence numbers and
// timestamps and a 200-byte dummy payload, one every interval. The track
// rewrites SSRC and payload type to the values bound by RTPSender.Send.
// Returns how many were written.
func sendPackets(track *webrtc.TrackLocalStaticRTP, codec webrtc.RTPCodecParameters, n int,
	interval time.Duration, stop <-chan struct{}) (int, error) {
	payload := make([]byte, dummyPayloadSize)
	for i := range payload {
		payload[i] = byte(i)
	}
	video := kindOf(codec.MimeType) == webrtc.RTPCodecTypeVideo
	if video {
		// A VP8 payload descriptor with S=1, partition 0, so a depacketizer
		// that looks at it sees a frame start.
		payload[0] = 0x10
	}
	seq := uint16(rand.Uint32())
	ts := rand.Uint32()
	step := uint32(uint64(codec.ClockRate) * uint64(interval) / uint64(time.Second))

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-stop:
				return i, nil
			case <-ticker.C:
			}
		}
		pkt := &rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				Marker:         video, // one packet per frame
				PayloadType:    uint8(codec.PayloadType),
				SequenceNumber: seq,
				Timestamp:      ts,
			},
			Payload: payload,
		}
		if err := track.WriteRTP(pkt); err != nil {
			return i, err
		}
		seq++
		ts += step
	}
	return n, nil
}

// readPLIs reports every PLI in the RTCP read by read until it fails.
func readPLIs(read func() ([]rtcp.Packet, error), onPLI func(mediaSSRC uint32)) {
	for {
		pkts, err := read()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			if pli, ok := pkt.(*rtcp.PictureLossIndication); ok {
				onPLI(pli.MediaSSRC)
			}
		}
	}
}

// inboundTrack is a remote track announced by an ion_relay_request.
type inboundTrack struct {
	ssrc  webrtc.SSRC
	recv  *webrtc.RTPReceiver
	count atomic.Uint64
}

// countRTP reads the track until it ends, counting packets. A payload type
// pion cannot map to a codec fails only that packet, so it is reported once
// and reading goes on.
func (t *inboundTrack) countRTP(track *webrtc.TrackRemote, onErr func(error)) {
	reported := false
	for {
		_, _, err := track.ReadRTP()
		if err == nil {
			t.count.Add(1)
			continue
		}
		if errors.Is(err, webrtc.ErrCodecNotFound) {
			if !reported {
				onErr(fmt.Errorf("rtp on ssrc %d: %w", t.ssrc, err))
				reported = true
			}
			continue
		}
		// Anything else (EOF, closed pipe after Stop) ends the track.
		return
	}
}
