# The part of Concrete's protocol (concrete-protocol.capnp, concrete-python 2.10) that
# fhe_backend/keyset.py reads: a ServerKeyset and each key's info record. Field numbers and
# types are the protocol's own, so that this partial declaration reads the same wire layout;
# payloads are only measured, never interpreted.
@0xd2a64233258d00f1;

enum KeyType { binary @0; ternary @1; }
enum Compression { none @0; seed @1; paillier @2; }

struct Modulus {
  modulus :union {
    native @0 :NativeModulus;
    powerOfTwo @1 :PowerOfTwoModulus;
    integer @2 :IntegerModulus;
  }
}
struct NativeModulus {}
struct PowerOfTwoModulus { power @0 :UInt32; }
struct IntegerModulus { modulus @0 :UInt32; }
struct Payload { data @0 :List(Data); }

struct LweBootstrapKeyParams {
  levelCount @0 :UInt32;
  baseLog @1 :UInt32;
  glweDimension @2 :UInt32;
  polynomialSize @3 :UInt32;
  variance @4 :Float64;
  integerPrecision @5 :UInt32;
  modulus @6 :Modulus;
  keyType @7 :KeyType;
  inputLweDimension @8 :UInt32;
}
struct LweBootstrapKeyInfo {
  id @0 :UInt32;
  inputId @1 :UInt32;
  outputId @2 :UInt32;
  params @3 :LweBootstrapKeyParams;
  compression @4 :Compression;
}
struct LweBootstrapKey { info @0 :LweBootstrapKeyInfo; payload @1 :Payload; }

struct LweKeyswitchKeyParams {
  levelCount @0 :UInt32;
  baseLog @1 :UInt32;
  variance @2 :Float64;
  integerPrecision @3 :UInt32;
  modulus @4 :Modulus;
  keyType @5 :KeyType;
  inputLweDimension @6 :UInt32;
  outputLweDimension @7 :UInt32;
}
struct LweKeyswitchKeyInfo {
  id @0 :UInt32;
  inputId @1 :UInt32;
  outputId @2 :UInt32;
  params @3 :LweKeyswitchKeyParams;
  compression @4 :Compression;
}
struct LweKeyswitchKey { info @0 :LweKeyswitchKeyInfo; payload @1 :Payload; }

struct PackingKeyswitchKeyParams {
  levelCount @0 :UInt32;
  baseLog @1 :UInt32;
  glweDimension @2 :UInt32;
  polynomialSize @3 :UInt32;
  inputLweDimension @4 :UInt32;
  innerLweDimension @5 :UInt32;
  variance @6 :Float64;
  integerPrecision @7 :UInt32;
  modulus @8 :Modulus;
  keyType @9 :KeyType;
}
struct PackingKeyswitchKeyInfo {
  id @0 :UInt32;
  inputId @1 :UInt32;
  outputId @2 :UInt32;
  params @3 :PackingKeyswitchKeyParams;
  compression @4 :Compression;
}
struct PackingKeyswitchKey { info @0 :PackingKeyswitchKeyInfo; payload @1 :Payload; }

struct ServerKeyset {
  lweBootstrapKeys @0 :List(LweBootstrapKey);
  lweKeyswitchKeys @1 :List(LweKeyswitchKey);
  packingKeyswitchKeys @2 :List(PackingKeyswitchKey);
}
