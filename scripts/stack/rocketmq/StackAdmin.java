// Tiny RocketMQ admin helper for scripts/stack.sh, run with the JDK source launcher:
//   java -cp "<rocketmq lib>/*" StackAdmin.java <command> [args]
// One JVM does what would take a dozen `mqadmin` calls (each ~5 s), and unlike mqadmin it
// exits non-zero when something fails.
//
// Commands (name server address comes from -Drocketmq.namesrv.addr or NAMESRV_ADDR, default 127.0.0.1:9876):
//   check [BROKER...]              exit 0 when the cluster has a registered master broker (each BROKER named)
//   apply TOPICS_FILE GROUPS_FILE  create/update topics ("topic message_type") and groups ("group orderly [retry_max_times]")
//   show                           print the non-system topics (with attributes) and groups
//   queues TOPIC...                print "topic broker queue min_offset max_offset", one line per queue

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

import org.apache.rocketmq.common.TopicConfig;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.remoting.protocol.admin.TopicOffset;
import org.apache.rocketmq.remoting.protocol.admin.TopicStatsTable;
import org.apache.rocketmq.remoting.protocol.body.ClusterInfo;
import org.apache.rocketmq.remoting.protocol.route.BrokerData;
import org.apache.rocketmq.remoting.protocol.subscription.SubscriptionGroupConfig;
import org.apache.rocketmq.tools.admin.DefaultMQAdminExt;

public class StackAdmin {
    static final String CLUSTER = System.getProperty("dmp.cluster", "DefaultCluster");
    static final int QUEUES = Integer.getInteger("dmp.queues", 8);
    static final Set<String> TYPES = Set.of("NORMAL", "FIFO", "DELAY", "TRANSACTION");

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            usage();
        }
        String namesrv = System.getProperty("rocketmq.namesrv.addr",
            System.getenv().getOrDefault("NAMESRV_ADDR", "127.0.0.1:9876"));
        DefaultMQAdminExt admin = new DefaultMQAdminExt(5000);
        admin.setNamesrvAddr(namesrv);
        admin.setInstanceName("dmp-stack-admin-" + ProcessHandle.current().pid());
        admin.start();
        int rc;
        try {
            switch (args[0]) {
                case "check":
                    rc = check(admin, List.of(args).subList(1, args.length));
                    break;
                case "apply":
                    if (args.length != 3) {
                        usage();
                    }
                    rc = apply(admin, Path.of(args[1]), Path.of(args[2]));
                    break;
                case "show":
                    rc = show(admin);
                    break;
                case "queues":
                    rc = queues(admin, List.of(args).subList(1, args.length));
                    break;
                default:
                    usage();
                    rc = 2;
            }
        } catch (Exception e) {
            System.err.println("ERROR: " + e);
            rc = 1;
        } finally {
            admin.shutdown();
        }
        System.exit(rc);
    }

    static void usage() {
        System.err.println("usage: StackAdmin check [BROKER...] | apply TOPICS_FILE GROUPS_FILE | show | queues TOPIC...");
        System.exit(2);
    }

    /** Master broker address -> broker name, for our cluster. Empty when none registered. */
    static Map<String, String> masters(DefaultMQAdminExt admin) throws Exception {
        ClusterInfo info = admin.examineBrokerClusterInfo();
        Map<String, String> out = new TreeMap<>();
        Set<String> names = info.getClusterAddrTable() == null ? null : info.getClusterAddrTable().get(CLUSTER);
        if (names == null) {
            return out;
        }
        for (String name : names) {
            BrokerData bd = info.getBrokerAddrTable().get(name);
            if (bd != null && bd.getBrokerAddrs().get(0L) != null) {
                out.put(bd.getBrokerAddrs().get(0L), name);
            }
        }
        return out;
    }

    static int check(DefaultMQAdminExt admin, List<String> brokers) throws Exception {
        Map<String, String> m = masters(admin);
        if (m.isEmpty()) {
            System.out.println("no master broker registered in cluster " + CLUSTER);
            return 1;
        }
        for (String broker : brokers) {
            if (!m.containsValue(broker)) {
                System.out.println("broker " + broker + " has no master registered in cluster " + CLUSTER);
                return 1;
            }
        }
        m.forEach((addr, name) -> System.out.println("broker " + name + " " + addr));
        return 0;
    }

    static List<String[]> readList(Path file) throws Exception {
        List<String[]> out = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            String l = line.replaceAll("#.*", "").trim();
            if (!l.isEmpty()) {
                out.add(l.split("\\s+"));
            }
        }
        return out;
    }

    static int apply(DefaultMQAdminExt admin, Path topicsFile, Path groupsFile) throws Exception {
        Map<String, String> m = masters(admin);
        if (m.isEmpty()) {
            System.err.println("ERROR: no master broker registered in cluster " + CLUSTER);
            return 1;
        }
        int failures = 0;
        for (String[] t : readList(topicsFile)) {
            String topic = t[0];
            String type = t.length > 1 ? t[1].toUpperCase() : "NORMAL";
            if (!TYPES.contains(type)) {
                System.err.println("ERROR: topic " + topic + ": unknown message type " + type);
                failures++;
                continue;
            }
            boolean fifo = type.equals("FIFO");
            int queues = t.length > 2 ? Integer.parseInt(t[2]) : QUEUES;
            StringBuilder orderConf = new StringBuilder();
            for (Map.Entry<String, String> b : m.entrySet()) {
                TopicConfig tc = new TopicConfig(topic, queues, queues, 6 /* RW */);
                tc.setOrder(fifo);
                Map<String, String> attrs = new HashMap<>();
                attrs.put("+message.type", type);
                tc.setAttributes(attrs);
                admin.createAndUpdateTopicConfig(b.getKey(), tc);
                TopicConfig got = admin.examineTopicConfig(b.getKey(), topic);
                String gotType = got == null || got.getAttributes() == null ? null : got.getAttributes().get("message.type");
                if (!type.equals(gotType)) {
                    System.err.println("ERROR: topic " + topic + " on " + b.getValue() + " has message.type=" + gotType + ", wanted " + type);
                    failures++;
                }
                if (orderConf.length() > 0) {
                    orderConf.append(';');
                }
                orderConf.append(b.getValue()).append(':').append(queues);
            }
            if (fifo) {
                admin.createOrUpdateOrderConf(topic, orderConf.toString(), true);
            }
            System.out.println("topic " + topic + " message.type=" + type + " queues=" + queues);
        }
        for (String[] g : readList(groupsFile)) {
            String group = g[0];
            boolean orderly = g.length > 1 && Boolean.parseBoolean(g[1]);
            for (Map.Entry<String, String> b : m.entrySet()) {
                SubscriptionGroupConfig sg = new SubscriptionGroupConfig();
                sg.setGroupName(group);
                sg.setConsumeMessageOrderly(orderly);
                if (g.length > 2) {
                    sg.setRetryMaxTimes(Integer.parseInt(g[2]));
                }
                admin.createAndUpdateSubscriptionGroupConfig(b.getKey(), sg);
                SubscriptionGroupConfig got = admin.examineSubscriptionGroupConfig(b.getKey(), group);
                if (got == null || got.isConsumeMessageOrderly() != orderly) {
                    System.err.println("ERROR: group " + group + " on " + b.getValue() + " not created as orderly=" + orderly);
                    failures++;
                }
            }
            System.out.println("group " + group + " orderly=" + orderly);
        }
        return failures == 0 ? 0 : 1;
    }

    static int show(DefaultMQAdminExt admin) throws Exception {
        Map<String, String> m = masters(admin);
        if (m.isEmpty()) {
            System.err.println("ERROR: no master broker registered in cluster " + CLUSTER);
            return 1;
        }
        for (Map.Entry<String, String> b : m.entrySet()) {
            System.out.println("broker " + b.getValue() + " " + b.getKey());
            Map<String, TopicConfig> topics = new TreeMap<>(admin.getAllTopicConfig(b.getKey(), 5000).getTopicConfigTable());
            for (TopicConfig tc : topics.values()) {
                if (isSystemTopic(tc.getTopicName(), b.getValue())) {
                    continue;
                }
                System.out.printf("  topic %-28s queues=%d order=%s attributes=%s%n",
                    tc.getTopicName(), tc.getWriteQueueNums(), tc.isOrder(), tc.getAttributes());
            }
            Map<String, SubscriptionGroupConfig> groups =
                new TreeMap<>(admin.getAllSubscriptionGroup(b.getKey(), 5000).getSubscriptionGroupTable());
            for (SubscriptionGroupConfig sg : groups.values()) {
                if (sg.getGroupName().startsWith("CID_") || sg.getGroupName().startsWith("TOOLS_")
                    || sg.getGroupName().startsWith("FILTERSRV_") || sg.getGroupName().startsWith("SELF_TEST_")) {
                    continue;
                }
                System.out.printf("  group %-28s orderly=%s%n", sg.getGroupName(), sg.isConsumeMessageOrderly());
            }
        }
        return 0;
    }

    static int queues(DefaultMQAdminExt admin, List<String> topics) throws Exception {
        for (String topic : topics) {
            TopicStatsTable stats = admin.examineTopicStats(topic);
            for (Map.Entry<MessageQueue, TopicOffset> q : new TreeMap<>(stats.getOffsetTable()).entrySet()) {
                System.out.printf("%s %s %d %d %d%n", topic, q.getKey().getBrokerName(), q.getKey().getQueueId(),
                    q.getValue().getMinOffset(), q.getValue().getMaxOffset());
            }
        }
        return 0;
    }

    static boolean isSystemTopic(String t, String brokerName) {
        return t.startsWith("rmq_sys_") || t.startsWith("RMQ_SYS_") || t.startsWith("%RETRY%") || t.startsWith("%DLQ%")
            || t.equals(CLUSTER) || t.equals(brokerName) || t.equals(CLUSTER + "_REPLY_TOPIC")
            || t.equals("SCHEDULE_TOPIC_XXXX") || t.equals("OFFSET_MOVED_EVENT") || t.equals("SELF_TEST_TOPIC")
            || t.equals("BenchmarkTest") || t.equals("TBW102") || t.equals("DefaultHeartBeatSyncerTopic");
    }
}
