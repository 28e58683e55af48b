//! Topic setup through the Kafka admin API (rdkafka's AdminClient).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;

pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    bootstrap: String,
    rt: tokio::runtime::Runtime,
}

fn opts() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)))
}

/// Every admin call gives up after this long, whatever the broker does.
const HARD_TIMEOUT: Duration = Duration::from_secs(45);

impl Admin {
    /// Runs an admin future with a hard deadline (a dead broker must not hang the run).
    fn call<T>(&self, what: &str, f: impl Future<Output = KafkaResult<T>>) -> Result<T> {
        match self.rt.block_on(async { tokio::time::timeout(HARD_TIMEOUT, f).await }) {
            Ok(r) => Ok(r?),
            Err(_) => bail!("{what}: no answer from the broker in {} s", HARD_TIMEOUT.as_secs()),
        }
    }

    pub fn connect(bootstrap: &str) -> Result<Admin> {
        let client: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("admin client")?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Admin { client, bootstrap: bootstrap.to_string(), rt })
    }

    /// Creates `topic` with `configs`; when it exists already, sets the
    /// configs on it instead. Waits until every partition has a leader.
    pub fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication: i32,
        configs: &[(String, String)],
    ) -> Result<()> {
        let mut nt = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
        for (k, v) in configs {
            nt = nt.set(k, v);
        }
        let res = self.call("create topic", self.client.create_topics([&nt], &opts()))?;
        for r in res {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    if !configs.is_empty() {
                        self.set_configs(topic, configs)?;
                    }
                }
                Err((t, e)) => bail!("create topic {t}: {e}"),
            }
        }
        self.wait_for_leaders(topic, partitions as usize)
    }

    /// Sets topic configs (AlterConfigs).
    pub fn set_configs(&self, topic: &str, configs: &[(String, String)]) -> Result<()> {
        let mut ac = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            ac = ac.set(k, v);
        }
        let res = self.call("alter configs", self.client.alter_configs([&ac], &opts()))?;
        for r in res {
            if let Err((_, e)) = r {
                bail!("alter configs of {topic}: {e}");
            }
        }
        Ok(())
    }

    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let res = self.call("delete topic", self.client.delete_topics(&[topic], &opts()))?;
        for r in res {
            if let Err((t, e)) = r {
                bail!("delete topic {t}: {e}");
            }
        }
        Ok(())
    }

    fn wait_for_leaders(&self, topic: &str, partitions: usize) -> Result<()> {
        let c: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5))
                && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
            {
                let ready = t.partitions().iter().filter(|p| p.leader() >= 0).count();
                if t.error().is_none() && ready >= partitions {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("topic {topic}: partitions have no leader after 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
