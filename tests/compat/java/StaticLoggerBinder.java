// A minimal SLF4J 1.7 binding so the Java client's own warnings and errors
// reach the check's log (the jars ship slf4j-api without a binding).
// Level from WEIR_COMPAT_JAVA_LOG: ERROR, WARN (default), INFO, DEBUG, TRACE.
package org.slf4j.impl;

import org.slf4j.ILoggerFactory;
import org.slf4j.Logger;
import org.slf4j.helpers.FormattingTuple;
import org.slf4j.helpers.MarkerIgnoringBase;
import org.slf4j.helpers.MessageFormatter;
import org.slf4j.spi.LoggerFactoryBinder;

public final class StaticLoggerBinder implements LoggerFactoryBinder {
    private static final StaticLoggerBinder SINGLETON = new StaticLoggerBinder();
    public static String REQUESTED_API_VERSION = "1.7.36";

    public static StaticLoggerBinder getSingleton() {
        return SINGLETON;
    }

    private final ILoggerFactory factory = StderrLogger::new;

    @Override
    public ILoggerFactory getLoggerFactory() {
        return factory;
    }

    @Override
    public String getLoggerFactoryClassStr() {
        return StderrLogger.class.getName();
    }
}

final class StderrLogger extends MarkerIgnoringBase {
    private static final int TRACE = 0, DEBUG = 1, INFO = 2, WARN = 3, ERROR = 4;
    private static final String[] NAMES = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"};
    private static final int LEVEL = level();

    private static int level() {
        String want = System.getenv("WEIR_COMPAT_JAVA_LOG");
        for (int i = 0; i < NAMES.length; i++) {
            if (NAMES[i].equalsIgnoreCase(want)) {
                return i;
            }
        }
        return WARN;
    }

    StderrLogger(String name) {
        this.name = name;
    }

    private void log(int level, String fmt, Object... args) {
        if (level < LEVEL) {
            return;
        }
        FormattingTuple t = MessageFormatter.arrayFormat(fmt, args);
        String shortName = name.substring(name.lastIndexOf('.') + 1);
        System.err.println(java.time.LocalTime.now() + " " + NAMES[level] + " " + shortName + ": " + t.getMessage());
        Throwable e = t.getThrowable();
        if (e != null) {
            e.printStackTrace(System.err);
        }
    }

    private void logT(int level, String msg, Throwable e) {
        log(level, msg, e);
    }

    public boolean isTraceEnabled() { return LEVEL <= TRACE; }
    public void trace(String m) { log(TRACE, m); }
    public void trace(String f, Object a) { log(TRACE, f, a); }
    public void trace(String f, Object a, Object b) { log(TRACE, f, a, b); }
    public void trace(String f, Object... a) { log(TRACE, f, a); }
    public void trace(String m, Throwable e) { logT(TRACE, m, e); }
    public boolean isDebugEnabled() { return LEVEL <= DEBUG; }
    public void debug(String m) { log(DEBUG, m); }
    public void debug(String f, Object a) { log(DEBUG, f, a); }
    public void debug(String f, Object a, Object b) { log(DEBUG, f, a, b); }
    public void debug(String f, Object... a) { log(DEBUG, f, a); }
    public void debug(String m, Throwable e) { logT(DEBUG, m, e); }
    public boolean isInfoEnabled() { return LEVEL <= INFO; }
    public void info(String m) { log(INFO, m); }
    public void info(String f, Object a) { log(INFO, f, a); }
    public void info(String f, Object a, Object b) { log(INFO, f, a, b); }
    public void info(String f, Object... a) { log(INFO, f, a); }
    public void info(String m, Throwable e) { logT(INFO, m, e); }
    public boolean isWarnEnabled() { return LEVEL <= WARN; }
    public void warn(String m) { log(WARN, m); }
    public void warn(String f, Object a) { log(WARN, f, a); }
    public void warn(String f, Object a, Object b) { log(WARN, f, a, b); }
    public void warn(String f, Object... a) { log(WARN, f, a); }
    public void warn(String m, Throwable e) { logT(WARN, m, e); }
    public boolean isErrorEnabled() { return LEVEL <= ERROR; }
    public void error(String m) { log(ERROR, m); }
    public void error(String f, Object a) { log(ERROR, f, a); }
    public void error(String f, Object a, Object b) { log(ERROR, f, a, b); }
    public void error(String f, Object... a) { log(ERROR, f, a); }
    public void error(String m, Throwable e) { logT(ERROR, m, e); }
}
