//! Carrying the origin's RTP header extensions across the relay leg.
//!
//! str0m writes extensions from one session-wide map fixed when the `Rtc`
//! is built, and drops what it has no serialiser for. So the leg's map has
//! opaque slots: a track's extensions take them in the order its signal
//! lists them (PROTOCOL.md B.7), and each slot copies bytes in and out of
//! [`LegExtensions`] untouched. str0m's own extensions (abs-send-time,
//! transport-cc, mid, rid) keep their ids.

use bytes::Bytes;
use str0m::rtp::{Extension, ExtensionMap, ExtensionSerializer, ExtensionValues};

/// Leg ids of the opaque slots, in the order a track's extensions use them.
pub(crate) const SLOT_IDS: [u8; 9] = [1, 5, 6, 7, 8, 9, 12, 13, 14];

/// Raw extension values of one packet, by leg id.
#[derive(Debug, Clone, Default)]
pub(crate) struct LegExtensions(pub(crate) Vec<(u8, Bytes)>);

/// One opaque slot: copies the bytes stored for its id.
#[derive(Debug)]
struct Slot(u8);

impl ExtensionSerializer for Slot {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        let Some(value) = ev
            .user_values
            .get::<LegExtensions>()
            .and_then(|l| l.0.iter().find(|(id, _)| *id == self.0))
            .map(|(_, v)| v)
        else {
            return 0;
        };
        if value.len() > buf.len() || value.len() > 255 {
            return 0;
        }
        buf[..value.len()].copy_from_slice(value);
        value.len()
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        let mut all = ev
            .user_values
            .get::<LegExtensions>()
            .cloned()
            .unwrap_or_default();
        all.0.push((self.0, Bytes::copy_from_slice(buf)));
        ev.user_values.set(all);
        true
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        true
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<LegExtensions>()
            .and_then(|l| l.0.iter().find(|(id, _)| *id == self.0))
            .is_some_and(|(_, v)| v.len() > 16)
    }
}

/// The leg's extension map: the opaque slots and nothing else. str0m's
/// own extensions (mid, abs-send-time, transport-cc, rid) are left out:
/// the leg maps every stream by SSRC and runs no bandwidth estimation, and
/// a base (Go) peer negotiates none, so each would only cost bytes in every
/// packet. A slot with no value writes nothing.
pub(crate) fn leg_extension_map() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for id in SLOT_IDS {
        map.set(
            id,
            Extension::with_serializer(&format!("urn:relay:opaque-slot:{id}"), Slot(id)),
        );
    }
    map
}

/// Extension values to write: the origin's `(id, value)` pairs moved onto
/// the slots of the track's list (`origin_ids`); values whose id the track
/// did not signal are dropped.
pub(crate) fn to_leg(origin_ids: &[u8], values: &[(u8, Bytes)]) -> ExtensionValues {
    let mut ev = ExtensionValues::default();
    let leg: Vec<(u8, Bytes)> = values
        .iter()
        .filter_map(|(id, v)| {
            let slot = origin_ids.iter().position(|o| o == id)?;
            Some((*SLOT_IDS.get(slot)?, v.clone()))
        })
        .collect();
    if !leg.is_empty() {
        ev.user_values.set(LegExtensions(leg));
    }
    ev
}

/// Bytes the extension block of a packet with `ev` takes on the wire.
///
/// str0m 0.25 sets the X bit and writes the block's 4-byte header
/// (`0xBEDE`, length) on every packet, even one with no extension in it;
/// the values follow in the one-byte form (1 byte + value each) or, when
/// one is over 16 bytes, the two-byte form (2 bytes + value), padded to 4.
pub(crate) fn block_len(ev: &ExtensionValues) -> usize {
    let Some(leg) = ev.user_values.get::<LegExtensions>() else {
        return 4;
    };
    let two_byte = leg.0.iter().any(|(_, v)| v.len() > 16);
    let body: usize = leg
        .0
        .iter()
        .map(|(_, v)| v.len() + if two_byte { 2 } else { 1 })
        .sum();
    4 + body.div_ceil(4) * 4
}

/// The origin's `(id, value)` pairs of a received packet. With no list (a
/// base peer's track) the leg ids are given as they are: the Go relay
/// forwards the origin's extension bytes under the origin's ids.
pub(crate) fn from_leg(origin_ids: &[u8], ev: &ExtensionValues) -> Vec<(u8, Bytes)> {
    let Some(leg) = ev.user_values.get::<LegExtensions>() else {
        return Vec::new();
    };
    leg.0
        .iter()
        .filter_map(|(leg_id, v)| {
            if origin_ids.is_empty() {
                return Some((*leg_id, v.clone()));
            }
            let slot = SLOT_IDS.iter().position(|s| s == leg_id)?;
            Some((*origin_ids.get(slot)?, v.clone()))
        })
        .collect()
}
