//! Data-channel handles.

use std::sync::Arc;

use crate::queue::{Rx, Tx};
use bytes::Bytes;
use relay_proto::ChannelId;

use crate::driver::Command;
use crate::error::Error;
use crate::peer::{Shared, call};

/// One message received on a data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    /// Binary (`true`) or text.
    pub binary: bool,
    /// The message.
    pub data: Bytes,
}

/// A data channel, opened by either side.
///
/// [`DataChannel::send`] waits while the channel is not open yet or its send
/// buffer is full. Received messages wait in a queue of
/// [`Config::channel_queue`](crate::Config::channel_queue) messages; when
/// [`DataChannel::recv`] falls that far behind, newer ones are dropped and
/// counted in [`Stats::channel_messages_dropped`](crate::Stats::channel_messages_dropped).
pub struct DataChannel {
    id: ChannelId,
    label: String,
    incoming: Rx<ChannelMessage>,
    commands: Tx<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannel")
            .field("id", &self.id)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl DataChannel {
    pub(crate) fn new(
        id: ChannelId,
        label: String,
        incoming: Rx<ChannelMessage>,
        commands: Tx<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        DataChannel {
            id,
            label,
            incoming,
            commands,
            shared,
        }
    }

    /// The channel's id on this peer.
    pub fn id(&self) -> ChannelId {
        self.id
    }

    /// The channel's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends a binary message (at most 64 KiB), waiting for the channel to
    /// open and for room in its send buffer.
    pub async fn send(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.write(true, data.into()).await
    }

    /// Sends a text message, as [`DataChannel::send`] does.
    pub async fn send_text(&self, text: &str) -> Result<(), Error> {
        self.write(false, Bytes::copy_from_slice(text.as_bytes()))
            .await
    }

    async fn write(&self, binary: bool, data: Bytes) -> Result<(), Error> {
        let channel = self.id;
        call(&self.commands, &self.shared, |done| Command::Write {
            channel,
            binary,
            data,
            done,
        })
        .await
    }

    /// The next received message; `None` once the channel or the peer is
    /// closed and every message before that was read.
    pub async fn recv(&self) -> Option<ChannelMessage> {
        self.incoming.recv().await
    }

    /// Closes the channel (the remote sees it close too).
    pub async fn close(&self) -> Result<(), Error> {
        let channel = self.id;
        call(&self.commands, &self.shared, |done| Command::CloseChannel {
            channel,
            done,
        })
        .await
    }
}
