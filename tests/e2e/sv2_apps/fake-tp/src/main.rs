//! A Template Provider stand-in for the sv2-k8s e2e check: it accepts one pool at a time over
//! Noise with a given authority key pair, answers SetupConnection, and after the pool's
//! CoinbaseOutputConstraints sends one future NewTemplate and its SetNewPrevHash on a
//! regtest-like chain (easy nBits), so the pool opens its listener and hands out jobs.
//! Every message it sees is logged on stderr, one line each, for the Python side to read.
//!
//!   fake-tp <listen ip:port> <authority public key> <authority secret key>

use std::{
    env,
    time::{SystemTime, UNIX_EPOCH},
};

use stratum_apps::{
    key_utils::{Secp256k1PublicKey, Secp256k1SecretKey},
    network_helpers::accept_noise_connection,
    stratum_core::{
        binary_sv2::{Seq0255, B0255, B064K, U256},
        common_messages_sv2::SetupConnectionSuccess,
        framing_sv2::framing::Frame,
        parsers_sv2::{AnyMessage, CommonMessages, TemplateDistribution},
        template_distribution_sv2::{NewTemplate, SetNewPrevHash},
    },
    utils::{
        protocol_message_type::{protocol_message_type, MessageType},
        types::{Message, Sv2Frame},
    },
};
use tokio::net::{TcpListener, TcpStream};

const TEMPLATE_ID: u64 = 1;
// Regtest's proof-of-work limit: every share the pool validates is also a block.
const N_BITS: u32 = 0x207f_ffff;
const BLOCK_VERSION: u32 = 0x2000_0000;
const COINBASE_VALUE_SATS: u64 = 5_000_000_000;
const HEIGHT: u32 = 1;

fn log(line: &str) {
    eprintln!("fake-tp: {line}");
}

fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

// Target for compact bits, little-endian as SetNewPrevHash carries it.
fn target_le(n_bits: u32) -> [u8; 32] {
    let exponent = (n_bits >> 24) as usize;
    let mantissa = n_bits & 0x007f_ffff;
    let mut be = [0u8; 32];
    for (i, byte) in mantissa.to_be_bytes()[1..].iter().enumerate() {
        let at = 32 + i;
        if at >= exponent && at - exponent < 32 {
            be[at - exponent] = *byte;
        }
    }
    be.reverse();
    be
}

fn new_template() -> NewTemplate<'static> {
    // BIP34: the height as a minimal script push starts the coinbase scriptSig.
    let prefix: B0255 = vec![0x01, HEIGHT as u8].try_into().expect("short prefix");
    let outputs: B064K = Vec::new().try_into().expect("empty outputs");
    NewTemplate {
        template_id: TEMPLATE_ID,
        future_template: true,
        version: BLOCK_VERSION,
        coinbase_tx_version: 2,
        coinbase_prefix: prefix,
        coinbase_tx_input_sequence: u32::MAX,
        coinbase_tx_value_remaining: COINBASE_VALUE_SATS,
        coinbase_tx_outputs_count: 0,
        coinbase_tx_outputs: outputs,
        coinbase_tx_locktime: 0,
        merkle_path: Seq0255::new(Vec::<U256>::new()).expect("empty path"),
    }
}

fn set_new_prev_hash() -> SetNewPrevHash<'static> {
    // Any fixed hash will do: the pool never checks it against a chain.
    let prev: [u8; 32] = [0x11; 32];
    SetNewPrevHash {
        template_id: TEMPLATE_ID,
        prev_hash: U256::from(prev),
        header_timestamp: now(),
        n_bits: N_BITS,
        target: U256::from(target_le(N_BITS)),
    }
}

fn frame(message: Message) -> Sv2Frame {
    message.try_into().expect("message encodes")
}

async fn serve(stream: TcpStream, public: Secp256k1PublicKey, secret: Secp256k1SecretKey) {
    let noise = match accept_noise_connection::<Message>(stream, public, secret, 3600).await {
        Ok(noise) => noise,
        Err(e) => return log(&format!("noise handshake failed: {e:?}")),
    };
    log("noise handshake completed");
    let (mut reader, mut writer) = noise.into_split();
    loop {
        let mut incoming = match reader.read_frame().await {
            Ok(Frame::Sv2(f)) => f,
            Ok(Frame::HandShake(_)) => return log("unexpected handshake frame"),
            Err(e) => return log(&format!("connection closed: {e:?}")),
        };
        let Some(header) = incoming.get_header() else {
            return log("frame without header");
        };
        let (ext, kind) = (header.ext_type(), header.msg_type());
        let mut replies: Vec<Message> = Vec::new();
        match protocol_message_type(ext, kind) {
            MessageType::Common => match CommonMessages::try_from((kind, incoming.payload())) {
                Ok(CommonMessages::SetupConnection(m)) => {
                    log(&format!(
                        "SetupConnection protocol={:?} min_version={} max_version={} flags={:#b}",
                        m.protocol, m.min_version, m.max_version, m.flags
                    ));
                    replies.push(AnyMessage::Common(CommonMessages::SetupConnectionSuccess(
                        SetupConnectionSuccess { used_version: 2, flags: 0 },
                    )));
                }
                Ok(other) => log(&format!("common message {other:?}")),
                Err(e) => log(&format!("bad common message type {kind}: {e:?}")),
            },
            MessageType::TemplateDistribution => {
                match TemplateDistribution::try_from((kind, incoming.payload())) {
                    Ok(TemplateDistribution::CoinbaseOutputConstraints(m)) => {
                        log(&format!(
                            "CoinbaseOutputConstraints max_additional_size={} max_additional_sigops={}",
                            m.coinbase_output_max_additional_size, m.coinbase_output_max_additional_sigops
                        ));
                        replies.push(AnyMessage::TemplateDistribution(
                            TemplateDistribution::NewTemplate(new_template()),
                        ));
                        replies.push(AnyMessage::TemplateDistribution(
                            TemplateDistribution::SetNewPrevHash(set_new_prev_hash()),
                        ));
                    }
                    Ok(TemplateDistribution::SubmitSolution(m)) => log(&format!(
                        "SubmitSolution template_id={} nonce={} ntime={}",
                        m.template_id, m.header_nonce, m.header_timestamp
                    )),
                    Ok(other) => log(&format!("template distribution message {other}")),
                    Err(e) => log(&format!("bad template distribution message type {kind}: {e:?}")),
                }
            }
            _ => log(&format!("unexpected message ext={ext} type={kind}")),
        }
        for reply in replies {
            let name = match &reply {
                AnyMessage::Common(_) => "SetupConnectionSuccess",
                AnyMessage::TemplateDistribution(TemplateDistribution::NewTemplate(_)) => "NewTemplate",
                _ => "SetNewPrevHash",
            };
            if let Err(e) = writer.write_frame(frame(reply).into()).await {
                return log(&format!("write failed: {e:?}"));
            }
            log(&format!("sent {name}"));
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: fake-tp <listen ip:port> <authority public key> <authority secret key>");
        std::process::exit(2);
    }
    let public: Secp256k1PublicKey = args[2].parse().expect("authority public key");
    let secret: Secp256k1SecretKey = args[3].parse().expect("authority secret key");
    let listener = TcpListener::bind(&args[1]).await.expect("bind");
    log(&format!("listening on {}", args[1]));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                log(&format!("connection from {peer}"));
                tokio::spawn(serve(stream, public, secret));
            }
            Err(e) => log(&format!("accept failed: {e}")),
        }
    }
}
