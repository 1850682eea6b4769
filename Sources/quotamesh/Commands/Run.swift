import ArgumentParser
import Configuration
import Foundation
import Logging
import QuotaMeshCore
import QuotaMeshNode

/// `quotamesh run`: runs a node until SIGTERM or SIGINT.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node: gossip with vouched peers and serve the local API.",
        discussion: "Works with no configuration and an empty trust store; creates an identity on first start.")

    @Option(help: "A JSON configuration file; QUOTAMESH_* variables override it, flags override both. Default: $QUOTAMESH_CONFIG.")
    var config: String?

    @Option(help: "The identity file (created if missing). Default: .quotamesh/identity")
    var identity: String?

    @Option(help: "The trust store folder. Default: Peers")
    var peers: String?

    @Option(help: "The state folder. Default: .quotamesh")
    var state: String?

    @Option(help: "Gossip UDP address, HOST:PORT. Default: 0.0.0.0:9720")
    var gossip: String?

    @Option(help: "Local API address, HOST:PORT. Default: 127.0.0.1:9721")
    var api: String?

    @Flag(help: "Allow the local API to listen on a non-loopback address (requires --api-token-file).")
    var allowRemoteAPI = false

    @Option(help: "A file (mode 0600) holding the API's bearer token; every API request must then present it.")
    var apiTokenFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error (debug adds a line per acquire decision).")
    var logLevel: String = "info"

    @Option(help: "Log lines as text, or as json (one object per line, for log shippers).")
    var logFormat: String = "text"

    /// The configuration as `run` reads it: QUOTAMESH_* environment variables over the file (`file`, else
    /// `$QUOTAMESH_CONFIG`) over the defaults, the variables read through swift-configuration
    /// (`quotamesh.gossip_interval` is QUOTAMESH_GOSSIP_INTERVAL). An error exits 78, naming the key.
    static func loadConfiguration(file: String?) throws -> NodeConfiguration {
        let environment = ConfigReader(provider: EnvironmentVariablesProvider())
        var overrides: [String: String] = [:]
        for key in NodeConfiguration.environmentKeys {
            if let value = environment.string(forKey: ConfigKey(["quotamesh", key])) { overrides[key] = value }
        }
        do {
            return try NodeConfiguration.load(file: file ?? environment.string(forKey: "quotamesh.config"), environment: overrides)
        } catch {
            printError("error: configuration: \(error)")
            throw ExitCode(ExitCodes.configuration)
        }
    }

    func validate() throws {
        if let gossip, Endpoint(parsing: gossip) == nil { throw ValidationError("--gossip must be HOST:PORT") }
        if let api, Endpoint(parsing: api) == nil { throw ValidationError("--api must be HOST:PORT") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level: unknown level '\(logLevel)'") }
        if !["text", "json"].contains(logFormat) { throw ValidationError("--log-format must be text or json, got '\(logFormat)'") }
    }

    func run() async throws {
        var configuration = try Self.loadConfiguration(file: config)
        if let identity { configuration.identityPath = identity }
        if let peers { configuration.peersDirectory = peers }
        if let state { configuration.stateDirectory = state }
        if let gossip, let endpoint = Endpoint(parsing: gossip) { configuration.gossip = endpoint }
        if let api, let endpoint = Endpoint(parsing: api) { configuration.api = endpoint }
        if allowRemoteAPI { configuration.allowRemoteAPI = true }
        if let apiTokenFile { configuration.apiTokenFile = apiTokenFile }

        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            if json {
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "quotamesh")
        do {
            try await NodeApp.run(configuration, logger: logger)
        } catch let error as IdentityError {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.dataError)
        } catch let error as StartupError {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.configuration)
        } catch let error as FileError {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.cannotCreate)
        }
    }
}
