# Sends part of a completed pack cache file into a client's HTTP response with sendfile(2):
# the page cache goes to the socket without a copy through user space, which is what a
# cached pack otherwise costs the sidecar most (reading the file into its heap, then
# writing it to the socket). Started by sidecar/src/pack-cache/file-sender.ts with the
# client's socket as stdout (non-blocking, shared with the sidecar, which writes nothing
# while this runs). Perl because git depends on it: it is wherever git is, and starts in a
# few milliseconds.
#
#   perl send-pack-file.pl PATH OFFSET LENGTH SYS_SENDFILE
#
# Writes LENGTH bytes of PATH from OFFSET as side-band-64k band-1 packets (65515 bytes of
# data each), all in one chunk of the response's chunked encoding. Exits non-zero if any byte
# could not be sent; the sidecar then cuts the response off.
use strict;
use warnings;

my ($path, $offset, $length, $sys_sendfile) = @ARGV;
# syscall() passes a number as an integer but a string as a pointer: make them numbers.
$_ += 0 for $offset, $length, $sys_sendfile;
my $DATA_MAX = 65515;
my $MSG_MORE = 0x8000;
my $STALL_SECONDS = 300;

open(my $pack, '<:raw', $path) or die "open $path: $!\n";
defined sysseek($pack, $offset, 0) or die "seek $path: $!\n";
my $in = fileno($pack);

sub wait_writable {
  my $bits = '';
  vec($bits, fileno(STDOUT), 1) = 1;
  select(undef, $bits, undef, $STALL_SECONDS) > 0 or die "the client stopped reading\n";
}

# MSG_MORE: a packet header goes out with the data after it, not as a segment of its own.
sub put {
  my ($bytes, $flags) = @_;
  while (length $bytes) {
    my $sent = send(STDOUT, $bytes, $flags);
    if (defined $sent) {
      substr($bytes, 0, $sent, '');
      next;
    }
    $!{EAGAIN} or die "send: $!\n";
    wait_writable();
  }
}

sub put_file {
  my ($left) = @_;
  while ($left > 0) {
    my $sent = syscall($sys_sendfile, fileno(STDOUT), $in, 0, $left);
    if ($sent > 0) {
      $left -= $sent;
      next;
    }
    die "$path ended early\n" if $sent == 0;
    $!{EAGAIN} or die "sendfile: $!\n";
    wait_writable();
  }
}

my $packets = int(($length + $DATA_MAX - 1) / $DATA_MAX);
put(sprintf("%x\r\n", $length + 5 * $packets), $MSG_MORE);
for (my $left = $length; $left > 0; $left -= $DATA_MAX) {
  my $size = $left < $DATA_MAX ? $left : $DATA_MAX;
  put(sprintf('%04x', $size + 5) . "\x01", $MSG_MORE);
  put_file($size);
}
put("\r\n", 0);
