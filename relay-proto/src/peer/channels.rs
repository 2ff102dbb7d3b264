//! User data channels on the peer.

use super::*;

impl Peer {
    // --------------------------------------------------------- data channels

    /// Opens a data channel to the remote, in band (DCEP). Before Ready the
    /// channel waits and opens right after the signalling channel, so it can
    /// never take the signalling channel's stream id. [`Event::ChannelOpen`]
    /// follows, or [`Event::ChannelError`] when the open fails.
    pub fn create_data_channel(
        &mut self,
        now: Instant,
        label: &str,
        options: ChannelOptions,
    ) -> Result<ChannelId, Error> {
        self.check_open()?;
        self.advance(now);
        if label == SIGNAL_LABEL {
            return Err(ChannelError::ReservedLabel(label.into()).into());
        }
        let id = self.next_channel;
        self.next_channel += 1;
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
        if self.signal_open {
            self.open_channel_now(id);
            self.drain();
        }
        Ok(ChannelId(id))
    }

    pub(super) fn open_channel_now(&mut self, id: u64) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        let reliability = match ch.options.reliability {
            Reliability::Reliable => RtcReliability::Reliable,
            Reliability::MaxRetransmits(n) => RtcReliability::MaxRetransmits { retransmits: n },
            Reliability::MaxLifetime(d) => RtcReliability::MaxPacketLifetime {
                lifetime: d.as_millis().min(u16::MAX as u128) as u16,
            },
        };
        let rtc_id = self.rtc.direct_api().create_data_channel(ChannelConfig {
            label: ch.label.clone(),
            ordered: ch.options.ordered,
            reliability,
            negotiated: None,
            protocol: String::new(),
        });
        ch.rtc_id = Some(rtc_id);
        ch.open_deadline = Some(later(self.last_now, self.config.channel_open_timeout));
        self.by_rtc_id.insert(rtc_id, id);
    }

    /// Writes one message to a data channel. A full send buffer is
    /// [`ChannelError::Full`]; [`Event::ChannelWritable`] says when to try
    /// again. Drain the outputs afterwards.
    pub fn channel_write(
        &mut self,
        now: Instant,
        id: ChannelId,
        binary: bool,
        data: &[u8],
    ) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let ch = self.channels.get_mut(&id.0).ok_or(ChannelError::Unknown)?;
        if data.len() > 64 * 1024 {
            return Err(ChannelError::TooLarge(data.len()).into());
        }
        let (Some(rtc_id), true) = (ch.rtc_id, ch.open) else {
            return Err(ChannelError::NotOpen.into());
        };
        let Some(mut chan) = self.rtc.channel(rtc_id) else {
            return Err(ChannelError::NotOpen.into());
        };
        match chan.write(binary, data) {
            Ok(true) => {
                self.drain();
                Ok(())
            }
            Ok(false) => {
                ch.blocked = true;
                Err(ChannelError::Full.into())
            }
            Err(e) => Err(Error::Rtc(e.to_string())),
        }
    }

    /// Closes a data channel; [`Event::ChannelClosed`] follows.
    pub fn close_data_channel(&mut self, now: Instant, id: ChannelId) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let ch = self.channels.get(&id.0).ok_or(ChannelError::Unknown)?;
        match ch.rtc_id {
            Some(rtc_id) => {
                self.rtc.direct_api().close_data_channel(rtc_id);
                self.drain();
            }
            None => {
                self.channels.remove(&id.0);
                self.events.push_back(Event::ChannelClosed(id));
            }
        }
        Ok(())
    }

    /// Gives up on our channels that did not open in time. str0m keeps
    /// retrying a stream the remote took at the same moment (a Go peer
    /// numbers channels with no even/odd split) and reports nothing.
    pub(super) fn expire_channel_opens(&mut self, now: Instant) {
        let mut expired: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.open && c.open_deadline.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for id in expired {
            let Some(ch) = self.channels.remove(&id) else {
                continue;
            };
            if let Some(rtc_id) = ch.rtc_id {
                self.by_rtc_id.remove(&rtc_id);
                self.rtc.direct_api().close_data_channel(rtc_id);
            }
            warn!(peer = %self.meta.peer_id, label = %ch.label, "data channel did not open in time");
            self.push_event(Event::ChannelError {
                id: ChannelId(id),
                error: ChannelError::OpenFailed,
            });
            self.push_event(Event::ChannelClosed(ChannelId(id)));
        }
    }

    /// The label of a data channel.
    pub fn channel_label(&self, id: ChannelId) -> Option<&str> {
        self.channels.get(&id.0).map(|c| c.label.as_str())
    }

    /// Ready once the signalling channel is open and DTLS is up. With a
    /// pre-negotiated channel (fast setup) str0m reports it open before the
    /// connection exists, so both are awaited.
    pub(super) fn maybe_ready(&mut self) {
        if self.state == PeerState::Ready
            || self.state == PeerState::Closed
            || !self.signal_channel_open
            || !self.dtls_connected
        {
            return;
        }
        let Some(rtc_id) = self.signal_id else {
            return;
        };
        self.signal_open = true;
        self.state = PeerState::Ready;
        self.connect_deadline = None;
        if let Some(mut ch) = self.rtc.channel(rtc_id) {
            ch.set_buffered_amount_low_threshold(64 * 1024);
        }
        info!(peer = %self.meta.peer_id, "ready");
        self.events.push_back(Event::Ready);
        self.events.extend(self.pre_ready.drain(..));
        let mut waiting: Vec<u64> = self
            .channels
            .iter()
            .filter(|(_, c)| c.rtc_id.is_none())
            .map(|(id, _)| *id)
            .collect();
        waiting.sort_unstable();
        for id in waiting {
            self.open_channel_now(id);
        }
    }

    pub(super) fn on_channel_open(&mut self, rtc_id: RtcChannelId, label: String) {
        if self.state == PeerState::Closed || self.placeholder == Some(rtc_id) {
            return;
        }
        let is_signal = if self.signal_id == Some(rtc_id) {
            true
        } else {
            // The answerer waits for the offerer's signalling channel.
            self.role == Some(Role::Answerer) && self.signal_id.is_none() && label == SIGNAL_LABEL
        };
        if is_signal {
            self.signal_id = Some(rtc_id);
            self.signal_channel_open = true;
            self.maybe_ready();
            return;
        }
        let id = match self.by_rtc_id.get(&rtc_id) {
            Some(&id) => id,
            None => {
                let id = self.next_channel;
                self.next_channel += 1;
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
            return;
        };
        ch.open = true;
        ch.open_deadline = None;
        let remote = ch.remote;
        if let Some(mut chan) = self.rtc.channel(rtc_id) {
            chan.set_buffered_amount_low_threshold(32 * 1024);
        }
        self.push_event(Event::ChannelOpen {
            id: ChannelId(id),
            label,
            remote,
        });
    }

    pub(super) fn on_channel_close(&mut self, rtc_id: RtcChannelId) {
        if self.state == PeerState::Closed {
            return;
        }
        if self.placeholder == Some(rtc_id) {
            // The remote opened a channel on the held stream; str0m refused
            // it, which the remote sees as that channel closing.
            self.placeholder = None;
            return;
        }
        if Some(rtc_id) == self.signal_id {
            if self.signal_open {
                // Without its signalling channel the relay cannot go on; a
                // Go peer closes it only when it closes the whole relay.
                self.close_with(CloseReason::Remote);
            } else {
                // Our signalling channel failed to open.
                self.close_with(CloseReason::Transport(
                    "the signalling channel could not be opened".into(),
                ));
            }
            return;
        }
        let Some(id) = self.by_rtc_id.remove(&rtc_id) else {
            return;
        };
        let Some(ch) = self.channels.remove(&id) else {
            return;
        };
        if !ch.open && !ch.remote {
            self.push_event(Event::ChannelError {
                id: ChannelId(id),
                error: ChannelError::OpenFailed,
            });
        }
        self.push_event(Event::ChannelClosed(ChannelId(id)));
    }
}
