//! The application's data channels on the peer.

use std::time::Instant;

use str0m::channel::ChannelId as RtcChannelId;
use tracing::warn;

use super::Peer;
use crate::channels::ChannelOptions;
use crate::error::{ChannelError, Error};
use crate::event::{ChannelId, Event};
use crate::ops::RtcOp;
use crate::wire::SIGNAL_LABEL;

/// The most a data-channel message may carry here: str0m's direct API
/// sends at most 64 KiB per SCTP message.
const CHANNEL_MESSAGE_MAX: usize = 64 * 1024;

impl Peer {
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
        let id = self.channels.add_local(label, options);
        if self.phase.is_ready() {
            self.ops.push_back(RtcOp::OpenChannel(id));
            self.drain();
        }
        Ok(id)
    }

    /// Writes one message to a data channel. A full send buffer is
    /// [`ChannelError::Full`]; [`Event::ChannelWritable`] says when to try
    /// again. Then poll the outputs.
    pub fn channel_write(
        &mut self,
        now: Instant,
        id: ChannelId,
        binary: bool,
        data: &[u8],
    ) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let writable = self.channels.writable(id);
        if writable == Err(true) {
            return Err(ChannelError::Unknown.into());
        }
        if data.len() > CHANNEL_MESSAGE_MAX {
            return Err(ChannelError::TooLarge(data.len()).into());
        }
        let rtc_id: RtcChannelId = writable.map_err(|_| ChannelError::NotOpen)?;
        let written = self.mutate(|rtc| rtc.channel(rtc_id).map(|mut ch| ch.write(binary, data)));
        match written {
            None => Err(ChannelError::NotOpen.into()),
            Some(Ok(true)) => Ok(()),
            Some(Ok(false)) => {
                self.channels.set_blocked(id);
                Err(ChannelError::Full.into())
            }
            Some(Err(e)) => Err(Error::Rtc(e.to_string())),
        }
    }

    /// Closes a data channel; [`Event::ChannelClosed`] follows.
    pub fn close_data_channel(&mut self, now: Instant, id: ChannelId) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        match self.channels.close(id) {
            Err(()) => Err(ChannelError::Unknown.into()),
            Ok(Some(rtc_id)) => {
                self.mutate(|rtc| rtc.direct_api().close_data_channel(rtc_id));
                Ok(())
            }
            Ok(None) => {
                self.events.push_back(Event::ChannelClosed(id));
                Ok(())
            }
        }
    }

    /// The label of a data channel.
    pub fn channel_label(&self, id: ChannelId) -> Option<&str> {
        self.channels.label(id)
    }

    /// Gives up on our channels that did not open in time.
    pub(super) fn expire_channel_opens(&mut self, now: Instant) {
        for (id, label, rtc_id) in self.channels.handle_timeout(now) {
            if let Some(rtc_id) = rtc_id {
                self.ops.push_back(RtcOp::CloseChannel(rtc_id));
            }
            warn!(peer = %self.meta.peer_id, %label, "data channel did not open in time");
            self.push_event(Event::ChannelError {
                id,
                error: ChannelError::OpenFailed,
            });
            self.push_event(Event::ChannelClosed(id));
        }
    }
}
