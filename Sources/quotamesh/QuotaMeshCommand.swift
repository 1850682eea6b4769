import ArgumentParser; @main struct Q: ParsableCommand { func run() {} }
