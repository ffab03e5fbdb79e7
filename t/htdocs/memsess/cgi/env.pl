#!/usr/bin/perl
# A CGI sees the pool in its environment.
use strict;
use warnings;
use JSON::PP ();
my %env = map { $_ => $ENV{$_} } grep { /^MEMSESS_/ } keys %ENV;
print "Content-Type: application/json\r\n\r\n";
print JSON::PP->new->canonical->encode(\%env), "\n";
