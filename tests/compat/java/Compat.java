// Java kafka-clients 3.9.1 compatibility checks for Weir.
//
//   java Compat compression BOOTSTRAP   producer per compression type + assign() consumer
//   java Compat admin BOOTSTRAP         createTopics, describeTopics, describeConfigs, deleteTopics
//   java Compat group BOOTSTRAP         group consumer: read, commit, close, resume in a new consumer
//
// Same contract as python/common.py: exit 0 PASS, 1 FAIL, 77 SKIP; the last
// line printed is `REASON: ...`.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Compat {
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) {
            super(msg);
        }
    }

    static String step = "";

    /** Names what the check does next; a failure's reason starts with it. */
    static void step(String what) {
        step = what;
        System.err.println("== " + what);
    }

    static void expect(boolean cond, String msg) {
        if (!cond) {
            throw new CheckFailed(msg);
        }
    }

    static String topic(String name) {
        String suffix = System.getenv("COMPAT_SUFFIX");
        if (suffix == null || suffix.isEmpty()) {
            suffix = System.currentTimeMillis() + "-" + ProcessHandle.current().pid();
        }
        return "compat-" + name + "-" + suffix;
    }

    static Properties base(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", "weir-compat-java");
        return p;
    }

    static KafkaProducer<String, String> producer(String bootstrap, String compression) {
        Properties p = base(bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "10");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String group) {
        Properties p = base(bootstrap);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        }
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    static Admin admin(String bootstrap) {
        Properties p = base(bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return Admin.create(p);
    }

    static List<ConsumerRecord<String, String>> read(KafkaConsumer<String, String> c, int count, long timeoutMs) {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (out.size() < count && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                out.add(r);
            }
        }
        return out;
    }

    // ---- compression: one partition per codec, each read back in order ----

    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    static final int PER_CODEC = 1000;

    static void compression(String bootstrap) throws Exception {
        String name = topic("java-compression");
        step("createTopics " + name);
        try (Admin admin = admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(name, CODECS.length, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        for (int p = 0; p < CODECS.length; p++) {
            String codec = CODECS[p];
            step("produce " + PER_CODEC + " records with compression.type=" + codec);
            try (KafkaProducer<String, String> producer = producer(bootstrap, codec)) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (int i = 0; i < PER_CODEC; i++) {
                    // Repetitive values so every codec really compresses.
                    String value = codec + "-" + i + "-" + "abcdefgh".repeat(8);
                    sent.add(producer.send(new ProducerRecord<>(name, p, "k" + i, value)));
                }
                producer.flush();
                for (int i = 0; i < PER_CODEC; i++) {
                    long off = sent.get(i).get(30, TimeUnit.SECONDS).offset();
                    expect(off == i, codec + ": record " + i + " got offset " + off);
                }
            } catch (java.util.concurrent.ExecutionException e) {
                throw new CheckFailed(codec + " produce: " + e.getCause());
            }
            System.err.println("produced " + PER_CODEC + " records with compression " + codec);
        }
        step("consume (assign) all partitions");
        try (KafkaConsumer<String, String> c = consumer(bootstrap, null)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < CODECS.length; p++) {
                tps.add(new TopicPartition(name, p));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            List<ConsumerRecord<String, String>> got = read(c, CODECS.length * PER_CODEC, 60000);
            int[] next = new int[CODECS.length];
            for (ConsumerRecord<String, String> r : got) {
                int p = r.partition();
                int n = next[p]++;
                String want = CODECS[p] + "-" + n + "-" + "abcdefgh".repeat(8);
                expect(r.offset() == n && want.equals(r.value()) && ("k" + n).equals(r.key()),
                        CODECS[p] + ": offset " + r.offset() + " key " + r.key() + " value " + r.value()
                                + ", expected offset " + n + " value " + want);
            }
            for (int p = 0; p < CODECS.length; p++) {
                expect(next[p] == PER_CODEC, CODECS[p] + ": read " + next[p] + " of " + PER_CODEC + " records");
            }
            step("endOffsets");
            Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(15));
            for (TopicPartition tp : tps) {
                expect(end.get(tp) == PER_CODEC, tp + ": end offset " + end.get(tp));
            }
        }
    }

    // ---- admin ----

    static void adminCheck(String bootstrap) throws Exception {
        String name = topic("java-admin");
        try (Admin admin = admin(bootstrap)) {
            step("createTopics " + name);
            NewTopic nt = new NewTopic(name, 3, (short) 1).configs(Map.of("retention.ms", "3600000"));
            admin.createTopics(List.of(nt)).all().get(30, TimeUnit.SECONDS);

            step("describeTopics");
            TopicDescription d = admin.describeTopics(List.of(name)).allTopicNames().get(30, TimeUnit.SECONDS).get(name);
            expect(d != null, "describeTopics did not return " + name);
            expect(d.partitions().size() == 3, "describeTopics: " + d.partitions().size() + " partitions, created 3");
            expect(d.topicId() != null && !d.topicId().toString().equals("AAAAAAAAAAAAAAAAAAAAAA"),
                    "describeTopics: no topic id (" + d.topicId() + ")");
            for (var p : d.partitions()) {
                expect(p.leader() != null && !p.isr().isEmpty(), "partition " + p.partition() + " has no leader/ISR: " + p);
            }

            step("describeConfigs");
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, name);
            Config cfg = admin.describeConfigs(List.of(res), new DescribeConfigsOptions().includeSynonyms(true))
                    .all().get(30, TimeUnit.SECONDS).get(res);
            expect(cfg != null, "describeConfigs returned nothing for " + name);
            Map<String, ConfigEntry> entries = new HashMap<>();
            for (ConfigEntry e : cfg.entries()) {
                entries.put(e.name(), e);
            }
            System.err.println("describeConfigs: " + entries.size() + " entries");
            // A Kafka broker returns the full set (~30+ entries); tools rely on these.
            for (String key : List.of("cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes",
                    "max.message.bytes", "min.insync.replicas", "compression.type", "message.timestamp.type")) {
                expect(entries.containsKey(key), "describeConfigs lacks " + key + " (got " + entries.keySet() + ")");
            }
            ConfigEntry retention = entries.get("retention.ms");
            expect("3600000".equals(retention.value()), "retention.ms is " + retention.value() + ", created with 3600000");
            expect(retention.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "retention.ms source " + retention.source() + ", expected DYNAMIC_TOPIC_CONFIG");
            expect(!retention.synonyms().isEmpty()
                            && retention.synonyms().get(0).source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "retention.ms synonyms (asked with includeSynonyms) are " + retention.synonyms()
                            + ", expected the topic override first");
            ConfigEntry cleanup = entries.get("cleanup.policy");
            expect("delete".equals(cleanup.value()) && cleanup.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                            && cleanup.source() != ConfigEntry.ConfigSource.UNKNOWN,
                    "cleanup.policy: value " + cleanup.value() + " source " + cleanup.source()
                            + ", expected the default 'delete'");
            expect(entries.size() >= 20, "describeConfigs returned " + entries.size()
                    + " entries, a Kafka broker returns the full topic config set (30+)");

            step("deleteTopics");
            admin.deleteTopics(List.of(name)).all().get(30, TimeUnit.SECONDS);
            long deadline = System.currentTimeMillis() + 15000;
            while (admin.listTopics().names().get(15, TimeUnit.SECONDS).contains(name)) {
                expect(System.currentTimeMillis() < deadline, name + " still listed 15 s after deleteTopics");
                Thread.sleep(200);
            }
        }
    }

    // ---- group consumer: commit and resume ----

    static void group(String bootstrap) throws Exception {
        String name = topic("java-group");
        String group = name + "-g";
        final int total = 100;
        final int first = 40;
        step("createTopics " + name);
        try (Admin admin = admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(name, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        step("produce");
        try (KafkaProducer<String, String> producer = producer(bootstrap, "none")) {
            for (int i = 0; i < total; i++) {
                producer.send(new ProducerRecord<>(name, 0, "k" + i, "v" + i));
            }
            producer.flush();
        }
        TopicPartition tp = new TopicPartition(name, 0);
        try (KafkaConsumer<String, String> c = consumer(bootstrap, group)) {
            step("first group consumer: subscribe and read");
            c.subscribe(List.of(name));
            List<ConsumerRecord<String, String>> got = read(c, first, 60000);
            expect(got.size() >= first, "first consumer read " + got.size() + " of " + first + " records in 60 s");
            for (int i = 0; i < first; i++) {
                expect(("v" + i).equals(got.get(i).value()), "first consumer record " + i + " is " + got.get(i).value());
            }
            step("commitSync and committed");
            c.commitSync(Map.of(tp, new OffsetAndMetadata(first)), Duration.ofSeconds(15));
            Map<TopicPartition, OffsetAndMetadata> back = c.committed(Set.of(tp), Duration.ofSeconds(15));
            expect(back.get(tp) != null && back.get(tp).offset() == first, "committed offset reads back as " + back.get(tp));
        }
        try (KafkaConsumer<String, String> c = consumer(bootstrap, group)) {
            step("second group consumer: resume after the commit");
            c.subscribe(List.of(name));
            List<ConsumerRecord<String, String>> got = read(c, total - first, 60000);
            expect(!got.isEmpty(), "second consumer read nothing in 60 s");
            expect(got.get(0).offset() == first, "second consumer started at offset " + got.get(0).offset()
                    + ", expected " + first + " (the commit)");
            expect(got.size() == total - first, "second consumer read " + got.size() + " of " + (total - first));
            for (int i = 0; i < got.size(); i++) {
                expect(("v" + (first + i)).equals(got.get(i).value()), "second consumer record " + i + " is " + got.get(i).value());
            }
        }
    }

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: Compat compression|admin|group BOOTSTRAP");
            System.exit(2);
        }
        int code = 0;
        String reason = "ok";
        try {
            switch (args[0]) {
                case "compression": compression(args[1]); break;
                case "admin": adminCheck(args[1]); break;
                case "group": group(args[1]); break;
                default: throw new IllegalArgumentException("unknown check " + args[0]);
            }
        } catch (CheckFailed e) {
            code = 1;
            reason = e.getMessage();
        } catch (Throwable e) {
            e.printStackTrace();
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            code = 1;
            reason = e + (root != e ? " (cause: " + root + ")" : "");
        }
        if (code != 0 && !step.isEmpty()) {
            reason = step + ": " + reason;
        }
        System.out.println("REASON: " + reason.replace('\n', ' '));
        System.out.flush();
        // Client threads may linger; the result is decided.
        Runtime.getRuntime().halt(code);
    }
}
