//! The application's data channels: our ids for them, str0m's ids, and the
//! deadlines of the opens we started. A sub-machine the peer drives; str0m
//! is changed only by the peer, one mutation at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::channel::{ChannelConfig, ChannelId as RtcChannelId, Reliability as RtcReliability};

use crate::event::ChannelId;
use crate::time::later;

/// Delivery of a data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reliability {
    /// Every message arrives (the default).
    #[default]
    Reliable,
    /// A message is given up after this many retransmissions.
    MaxRetransmits(u16),
    /// A message is given up after this lifetime (milliseconds precision, at
    /// most 65.5 s).
    MaxLifetime(Duration),
}

/// Options of a data channel this side opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelOptions {
    /// Deliver in order (default `true`).
    pub ordered: bool,
    /// Delivery guarantee.
    pub reliability: Reliability,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            ordered: true,
            reliability: Reliability::Reliable,
        }
    }
}

impl ChannelOptions {
    /// Unordered delivery with the given reliability.
    pub fn unordered(reliability: Reliability) -> Self {
        ChannelOptions {
            ordered: false,
            reliability,
        }
    }
}

#[derive(Debug)]
struct UserChannel {
    label: String,
    options: ChannelOptions,
    /// str0m's id once str0m knows the channel (after Ready for ours).
    rtc_id: Option<RtcChannelId>,
    open: bool,
    /// The remote opened it.
    remote: bool,
    /// A write found the buffer full; report when there is room.
    blocked: bool,
    /// Ours, not open yet: when to give up on it.
    open_deadline: Option<Instant>,
}

/// What str0m reported about one of its channels, in our terms.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Ours or the remote's channel opened.
    Open {
        id: ChannelId,
        label: String,
        remote: bool,
    },
    /// A channel we do not report (the stream-holding placeholder).
    Ignored,
}

/// How a channel ended, for the events the peer reports.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) id: ChannelId,
    /// Ours, and it never opened.
    pub(crate) open_failed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Channels {
    channels: HashMap<u64, UserChannel>,
    by_rtc_id: HashMap<RtcChannelId, u64>,
    next: u64,
    /// The channel that holds stream 1 away from our signalling channel
    /// when we offer to a base peer; its events are not reported.
    placeholder: Option<RtcChannelId>,
}

impl Channels {
    /// A channel of ours, not known to str0m yet.
    pub(crate) fn add_local(&mut self, label: &str, options: ChannelOptions) -> ChannelId {
        let id = self.next;
        self.next += 1;
        self.channels.insert(
            id,
            UserChannel {
                label: label.to_string(),
                options,
                rtc_id: None,
                open: false,
                remote: false,
                blocked: false,
                open_deadline: None,
            },
        );
        ChannelId(id)
    }

    /// str0m's config for opening one of ours (in band, DCEP).
    pub(crate) fn rtc_config(&self, id: ChannelId) -> Option<ChannelConfig> {
        let ch = self.channels.get(&id.0)?;
        let reliability = match ch.options.reliability {
            Reliability::Reliable => RtcReliability::Reliable,
            Reliability::MaxRetransmits(n) => RtcReliability::MaxRetransmits { retransmits: n },
            Reliability::MaxLifetime(d) => RtcReliability::MaxPacketLifetime {
                lifetime: d.as_millis().min(u16::MAX as u128) as u16,
            },
        };
        Some(ChannelConfig {
            label: ch.label.clone(),
            ordered: ch.options.ordered,
            reliability,
            negotiated: None,
            protocol: String::new(),
        })
    }

    /// str0m took the channel under `rtc_id`; it must open by
    /// `now + timeout`.
    pub(crate) fn opening(
        &mut self,
        id: ChannelId,
        rtc_id: RtcChannelId,
        now: Instant,
        timeout: Duration,
    ) {
        if let Some(ch) = self.channels.get_mut(&id.0) {
            ch.rtc_id = Some(rtc_id);
            ch.open_deadline = Some(later(now, timeout));
            self.by_rtc_id.insert(rtc_id, id.0);
        }
    }

    /// Ours that wait for Ready before str0m hears of them, oldest first.
    pub(crate) fn waiting(&self) -> Vec<ChannelId> {
        let mut ids: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| c.rtc_id.is_none())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(ChannelId).collect()
    }

    pub(crate) fn set_placeholder(&mut self, rtc_id: RtcChannelId) {
        self.placeholder = Some(rtc_id);
    }

    pub(crate) fn is_placeholder(&self, rtc_id: RtcChannelId) -> bool {
        self.placeholder == Some(rtc_id)
    }

    /// str0m opened `rtc_id`: one of ours, or the remote's (which gets an id
    /// here).
    pub(crate) fn on_open(&mut self, rtc_id: RtcChannelId, label: String) -> Opened {
        if self.placeholder == Some(rtc_id) {
            return Opened::Ignored;
        }
        let id = match self.by_rtc_id.get(&rtc_id) {
            Some(&id) => id,
            None => {
                let id = self.next;
                self.next += 1;
                self.channels.insert(
                    id,
                    UserChannel {
                        label: label.clone(),
                        options: ChannelOptions::default(),
                        rtc_id: Some(rtc_id),
                        open: false,
                        remote: true,
                        blocked: false,
                        open_deadline: None,
                    },
                );
                self.by_rtc_id.insert(rtc_id, id);
                id
            }
        };
        let Some(ch) = self.channels.get_mut(&id) else {
            return Opened::Ignored;
        };
        ch.open = true;
        ch.open_deadline = None;
        Opened::Open {
            id: ChannelId(id),
            label,
            remote: ch.remote,
        }
    }

    /// str0m closed `rtc_id`; `None` when it is not an application channel.
    pub(crate) fn on_close(&mut self, rtc_id: RtcChannelId) -> Option<Ended> {
        if self.placeholder == Some(rtc_id) {
            // The remote opened a channel on the held stream; str0m refused
            // it, which the remote sees as that channel closing.
            self.placeholder = None;
            return None;
        }
        let id = self.by_rtc_id.remove(&rtc_id)?;
        let ch = self.channels.remove(&id)?;
        Some(Ended {
            id: ChannelId(id),
            open_failed: !ch.open && !ch.remote,
        })
    }

    /// Our id of str0m's channel.
    pub(crate) fn by_rtc(&self, rtc_id: RtcChannelId) -> Option<ChannelId> {
        self.by_rtc_id.get(&rtc_id).map(|id| ChannelId(*id))
    }

    /// str0m's id of an open channel: `Err(true)` when unknown, `Err(false)`
    /// when not open yet.
    pub(crate) fn writable(&self, id: ChannelId) -> Result<RtcChannelId, bool> {
        let ch = self.channels.get(&id.0).ok_or(true)?;
        match (ch.rtc_id, ch.open) {
            (Some(rtc_id), true) => Ok(rtc_id),
            _ => Err(false),
        }
    }

    /// A write found the buffer full.
    pub(crate) fn set_blocked(&mut self, id: ChannelId) {
        if let Some(ch) = self.channels.get_mut(&id.0) {
            ch.blocked = true;
        }
    }

    /// str0m's buffer of `rtc_id` has room: the channel, if a write waited.
    pub(crate) fn on_room(&mut self, rtc_id: RtcChannelId) -> Option<ChannelId> {
        let id = *self.by_rtc_id.get(&rtc_id)?;
        let ch = self.channels.get_mut(&id)?;
        std::mem::take(&mut ch.blocked).then_some(ChannelId(id))
    }

    /// Closes a channel str0m never heard of: forgotten at once. `Ok(None)`
    /// when that happened, `Ok(Some(rtc_id))` when str0m must close it.
    pub(crate) fn close(&mut self, id: ChannelId) -> Result<Option<RtcChannelId>, ()> {
        let ch = self.channels.get(&id.0).ok_or(())?;
        match ch.rtc_id {
            Some(rtc_id) => Ok(Some(rtc_id)),
            None => {
                self.channels.remove(&id.0);
                Ok(None)
            }
        }
    }

    pub(crate) fn label(&self, id: ChannelId) -> Option<&str> {
        self.channels.get(&id.0).map(|c| c.label.as_str())
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.channels.values().filter_map(|c| c.open_deadline).min()
    }

    /// Gives up on our channels that did not open in time (str0m keeps
    /// retrying a stream the remote took at the same moment and reports
    /// nothing): forgotten here, each with the str0m channel to close.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
    ) -> Vec<(ChannelId, String, Option<RtcChannelId>)> {
        let mut expired: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.open && c.open_deadline.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        expired
            .into_iter()
            .filter_map(|id| {
                let ch = self.channels.remove(&id)?;
                if let Some(rtc_id) = ch.rtc_id {
                    self.by_rtc_id.remove(&rtc_id);
                }
                Some((ChannelId(id), ch.label, ch.rtc_id))
            })
            .collect()
    }
}
