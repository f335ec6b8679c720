/** The lockstep command line. */
module dev.lockstep.cli {
    requires dev.lockstep.server;
    requires info.picocli;
    requires com.fasterxml.jackson.databind;
    requires jdk.management;
    requires java.management;
    requires java.net.http; // bench serve: the HTTP client
    requires java.logging; // serve: quiets Helidon's INFO lines
    exports dev.lockstep.cli;
    opens dev.lockstep.cli to info.picocli;
}
