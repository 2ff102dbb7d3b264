//! The codec table: which payload types an `Rtc` knows, and how a track's
//! type maps onto the relay leg when both ends announce `rtx`
//! (`docs/protocol.md`, B.6).

use str0m::RtcConfig;
use str0m::format::{Codec, FormatParams};
use str0m::media::Frequency;

use crate::media::{TrackCodec, TrackKind};

/// Registers every payload type a peer may signal (PROTOCOL.md A.4): str0m
/// fixes its table when the `Rtc` is built and drops unknown types.
///
/// Only the clock rate of an entry matters to us (str0m's sender reports
/// use it); static types get theirs from RFC 3551, 111 is Opus, the other
/// dynamic ones are taken as 90 kHz video. No entry has a resend type, so
/// str0m sends no RTX and no NACK.
pub(crate) fn register_payload_types(mut config: RtcConfig, rtx_leg: bool) -> RtcConfig {
    config = config.clear_codecs();
    let table = config.codec_config();
    if rtx_leg {
        // Between two of our peers that announce `rtx`: a (type, resend
        // type) pair per clock rate, which tracks are remapped onto.
        for class in LEG_CLASSES {
            let rate = Frequency::new(class.clock_rate).unwrap_or(Frequency::NINETY_KHZ);
            table.add_config(
                class.pt.into(),
                Some(class.rtx_pt.into()),
                class.codec,
                rate,
                class.channels,
                FormatParams::default(),
            );
        }
    }
    for pt in (0u8..=63).chain(96..=127) {
        if rtx_leg && !is_identity_in_rtx_table(pt) {
            continue;
        }
        let (codec, rate, channels) = match pt {
            0 => (Codec::PCMU, 8_000, Some(1)),
            8 => (Codec::PCMA, 8_000, Some(1)),
            9 => (Codec::G722, 8_000, Some(1)),
            13 => (Codec::CN, 8_000, Some(1)),
            3..=5 | 7 | 12 | 15 | 18 => (Codec::PCMU, 8_000, Some(1)),
            6 => (Codec::PCMU, 16_000, Some(1)),
            10 => (Codec::PCMU, 44_100, Some(2)),
            11 => (Codec::PCMU, 44_100, Some(1)),
            16 => (Codec::PCMU, 11_025, Some(1)),
            17 => (Codec::PCMU, 22_050, Some(1)),
            111 => (Codec::Opus, 48_000, Some(2)),
            _ => (Codec::Vp8, 90_000, None),
        };
        let rate = Frequency::new(rate).unwrap_or(Frequency::NINETY_KHZ);
        table.add_config(
            pt.into(),
            None,
            codec,
            rate,
            channels,
            FormatParams::default(),
        );
    }
    config.set_rtp_mode(true)
}

/// A relay-leg payload type with its resend type, for one clock rate.
struct LegClass {
    pt: u8,
    rtx_pt: u8,
    clock_rate: u32,
    channels: Option<u8>,
    codec: Codec,
}

/// The relay leg's payload types when both ends announce `rtx` (B.6).
const LEG_CLASSES: [LegClass; 7] = [
    LegClass {
        pt: 96,
        rtx_pt: 97,
        clock_rate: 90_000,
        channels: None,
        codec: Codec::Vp8,
    },
    LegClass {
        pt: 98,
        rtx_pt: 99,
        clock_rate: 48_000,
        channels: Some(2),
        codec: Codec::Opus,
    },
    LegClass {
        pt: 100,
        rtx_pt: 101,
        clock_rate: 48_000,
        channels: Some(1),
        codec: Codec::Opus,
    },
    LegClass {
        pt: 102,
        rtx_pt: 103,
        clock_rate: 8_000,
        channels: Some(1),
        codec: Codec::PCMU,
    },
    LegClass {
        pt: 104,
        rtx_pt: 105,
        clock_rate: 16_000,
        channels: Some(1),
        codec: Codec::PCMU,
    },
    LegClass {
        pt: 106,
        rtx_pt: 107,
        clock_rate: 32_000,
        channels: Some(1),
        codec: Codec::PCMU,
    },
    LegClass {
        pt: 108,
        rtx_pt: 109,
        clock_rate: 44_100,
        channels: Some(2),
        codec: Codec::PCMU,
    },
];

/// Payload types that keep their own entry (no resend type) in the `rtx`
/// table: all carried ones but those the leg pairs use.
pub(crate) fn is_identity_in_rtx_table(pt: u8) -> bool {
    pt <= 63 || (110..=127).contains(&pt)
}

/// The relay-leg payload type (and resend type) of a track whose origin
/// negotiated `codec`, when both ends announce `rtx`.
pub(crate) fn leg_payload_type(codec: &TrackCodec) -> (u8, Option<u8>) {
    let audio = codec.kind() == Some(TrackKind::Audio);
    let class = LEG_CLASSES.iter().find(|c| {
        c.clock_rate == codec.clock_rate
            && match (audio, c.channels) {
                (false, None) => true,
                (true, Some(ch)) => {
                    c.clock_rate != 48_000 || ch == codec.channels.clamp(1, 2) as u8
                }
                _ => false,
            }
    });
    match class {
        Some(c) => (c.pt, Some(c.rtx_pt)),
        None if is_identity_in_rtx_table(codec.payload_type) => (codec.payload_type, None),
        // An unusual clock rate on a type the leg pairs use: carried on a
        // free type with no retransmission.
        None => (110, None),
    }
}
