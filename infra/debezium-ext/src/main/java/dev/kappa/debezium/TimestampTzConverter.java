package dev.kappa.debezium;

import io.debezium.spi.converter.CustomConverter;
import io.debezium.spi.converter.RelationalColumn;
import java.sql.Timestamp;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Date;
import java.util.Locale;
import java.util.Properties;
import org.apache.kafka.connect.data.SchemaBuilder;

/**
 * Publishes PostgreSQL {@code timestamptz} columns as Kafka Connect {@code Timestamp}
 * (an instant in milliseconds; Avro {@code timestamp-millis}) rather than Debezium's
 * ISO-8601 {@code ZonedTimestamp} strings, so every consumer gets a typed instant.
 *
 * <p>Millisecond precision: the shop's tables declare {@code timestamptz(3)}, so nothing is lost.
 */
public class TimestampTzConverter implements CustomConverter<SchemaBuilder, RelationalColumn> {

  @Override
  public void configure(Properties props) {}

  @Override
  public void converterFor(RelationalColumn column, ConverterRegistration<SchemaBuilder> registration) {
    String type = column.typeName() == null ? "" : column.typeName().toLowerCase(Locale.ROOT);
    if (!type.equals("timestamptz") && !type.equals("timestamp with time zone")) {
      return;
    }
    SchemaBuilder schema = org.apache.kafka.connect.data.Timestamp.builder();
    if (column.isOptional()) {
      schema.optional();
    }
    registration.register(schema, value -> toDate(value, column));
  }

  private static Date toDate(Object value, RelationalColumn column) {
    if (value == null) {
      return null;
    }
    if (value instanceof Date d) {
      return new Date(d.getTime());
    }
    if (value instanceof Instant i) {
      return Date.from(i);
    }
    if (value instanceof OffsetDateTime o) {
      return Date.from(o.toInstant());
    }
    if (value instanceof ZonedDateTime z) {
      return Date.from(z.toInstant());
    }
    if (value instanceof Timestamp t) {
      return new Date(t.getTime());
    }
    if (value instanceof String s) {
      return Date.from(OffsetDateTime.parse(s.replace(' ', 'T'), DateTimeFormatter.ISO_OFFSET_DATE_TIME).toInstant());
    }
    throw new IllegalArgumentException(
        "column " + column.name() + ": cannot convert " + value.getClass().getName() + " to a Timestamp");
  }
}
