//! The agent run in-process, as `main` runs it: sockets bound first on
//! 127.0.0.1 port 0, a shutdown future, and a spy sink recording every
//! flush it is handed.

use std::time::Duration;

use sluice::agent::{self, BoundSockets, Reloads};
use sluice::config::{Config, RawConfig};
use sluice::sink::spy::SpySink;
use sluice::sink::SinkHandle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_the_final_flush_to_every_sink() {
    let raw = RawConfig::from_toml(
        "[listen]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n\
         [flush]\ninterval = \"1h\"\n[whisper]\nenabled = false\n[admin]\naddress = \"\"\n",
    )
    .unwrap();
    let config = Config::from_raw(&raw).unwrap();
    let sockets = BoundSockets::bind(&config).unwrap();
    let udp = sockets.udp[0].0;
    let spy = SpySink::default();
    let handle = SinkHandle::spawn(spy.clone(), &tokio::runtime::Handle::current());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent::run(
        config,
        sockets,
        vec![handle],
        async {
            let _ = stopped.await;
        },
        Reloads::none(),
    ));
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        client
            .send_to(b"inproc.hits:1|c\ninproc.temp:5|g", udp)
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();

    let batches = spy.batches();
    assert_eq!(batches.len(), 1, "one flush: the final one");
    let points: Vec<(String, f64)> = batches[0].iter().map(|(n, v)| (n.to_string(), v)).collect();
    let get = |name: &str| points.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(get("stats_counts.inproc.hits"), Some(10.0));
    assert_eq!(get("stats.gauges.inproc.temp"), Some(5.0));
    assert_eq!(get("stats_counts.statsd.packets_received"), Some(10.0));
}
