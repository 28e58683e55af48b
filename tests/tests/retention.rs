//! Topic configs drive the log: retention by size deletes old segments while
//! the node runs, DeleteRecords moves the log start, and the changes are
//! visible through DescribeConfigs and ListOffsets.

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use weir_tests::WeirDev;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_retention_and_delete_records_move_the_log_start() {
    let dev = WeirDev::start();
    let bootstrap = dev.bootstrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new("ret", 1, TopicReplication::Fixed(1)).set("segment.bytes", "1048576");
    admin.create_topics(&[topic], &opts).await.unwrap().remove(0).unwrap();
    let alter = AlterConfig::new(ResourceSpecifier::Topic("ret"))
        .set("segment.bytes", "1048576")
        .set("retention.bytes", "2097152");
    admin.alter_configs(&[alter], &opts).await.unwrap().remove(0).unwrap();
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("ret")], &opts)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let value = |k: &str| described.get(k).and_then(|e| e.value.clone());
    assert_eq!(value("retention.bytes").as_deref(), Some("2097152"));
    assert_eq!(value("cleanup.policy").as_deref(), Some("delete"), "defaults are described too");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let payload = vec![b'x'; 1024];
    let futs: Vec<_> = (0..6000)
        .map(|_| producer.send_result(FutureRecord::<(), _>::to("ret").payload(&payload)).unwrap())
        .collect();
    for f in futs {
        f.await.unwrap().unwrap();
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "ret-check")
        .create()
        .unwrap();
    // The retention task runs every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (low, high) = loop {
        let (low, high) = consumer.fetch_watermarks("ret", 0, Duration::from_secs(5)).unwrap();
        if low > 0 || Instant::now() > deadline {
            break (low, high);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(high, 6000);
    assert!(low > 0, "size retention deleted old segments (low watermark {low})");
    // About 6 MiB written, 2 MiB kept plus the active segment: most is gone.
    assert!(low >= 2000, "low watermark {low}");

    // DeleteRecords moves the log start further, and reads start there.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("ret", 0, Offset::Offset(5500)).unwrap();
    admin.delete_records(&tpl, &opts).await.unwrap();
    let (low, _) = consumer.fetch_watermarks("ret", 0, Duration::from_secs(5)).unwrap();
    assert_eq!(low, 5500);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("ret", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let first = loop {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            break rdkafka::Message::offset(&m.unwrap());
        }
    };
    assert_eq!(first, 5500);
}
