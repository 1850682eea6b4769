import Hummingbird; import NIOPosix; public enum Placeholder2 {}
